package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/rs/zerolog"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files to a temporary directory.
type testPKI struct {
	CAFile, ServerCert, ServerKey, ClientCert, ClientKey string

	Roots   *x509.CertPool  // trusts the CA
	Client  tls.Certificate // signed by the CA
	Foreign tls.Certificate // self-signed: not from the CA
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{
		CAFile:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
		Roots:      x509.NewCertPool(),
	}

	caKey := newECKey(t)
	caTmpl := certTemplate(t, "mqhub test CA")
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER := createCert(t, caTmpl, caTmpl, caKey, caKey)
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p.Roots.AddCert(caCert)
	writePEM(t, p.CAFile, "CERTIFICATE", caDER)

	serverKey := newECKey(t)
	serverTmpl := certTemplate(t, "127.0.0.1")
	serverTmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	serverTmpl.DNSNames = []string{"localhost"}
	serverTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	serverTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	writePEM(t, p.ServerCert, "CERTIFICATE", createCert(t, serverTmpl, caCert, serverKey, caKey))
	writeKey(t, p.ServerKey, serverKey)

	clientKey := newECKey(t)
	clientTmpl := certTemplate(t, "mqhub test client")
	clientTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	clientTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	clientDER := createCert(t, clientTmpl, caCert, clientKey, caKey)
	writePEM(t, p.ClientCert, "CERTIFICATE", clientDER)
	writeKey(t, p.ClientKey, clientKey)
	p.Client = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}

	foreignKey := newECKey(t)
	foreignTmpl := certTemplate(t, "mqhub foreign client")
	foreignTmpl.KeyUsage = x509.KeyUsageDigitalSignature
	foreignTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	p.Foreign = tls.Certificate{Certificate: [][]byte{createCert(t, foreignTmpl, foreignTmpl, foreignKey, foreignKey)}, PrivateKey: foreignKey}
	return p
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certTemplate(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"mqhub tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
}

func createCert(t *testing.T, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatalf("create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return der
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// withTLS configures the hub's TLS listener with the PKI's server
// certificate and, unless clientAuth is none, client-certificate checks.
func withTLS(p *testPKI, clientAuth string) func(*broker.Config) {
	return func(c *broker.Config) {
		c.TLSCert, c.TLSKey = p.ServerCert, p.ServerKey
		c.TLSClientAuth = clientAuth
		if clientAuth != broker.ClientAuthNone {
			c.TLSClientCA = p.CAFile
		}
	}
}

// dialTLS dials addr and completes the TLS handshake, within 5 s.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
}

func TestTLSClients(t *testing.T) {
	pki := newTestPKI(t)

	type clientCert int
	const (
		noCert clientCert = iota
		caSigned
		foreign
	)
	cases := []struct {
		name       string
		clientAuth string
		cert       clientCert
		maxVersion uint16 // 0: the default (TLS 1.3)
		wantOK     bool
		wantErr    string // part of the client's error when refused, if predictable
	}{
		{name: "round trip", clientAuth: broker.ClientAuthNone, wantOK: true},
		{name: "round trip TLS 1.2", clientAuth: broker.ClientAuthNone, maxVersion: tls.VersionTLS12, wantOK: true},
		{name: "TLS 1.1 refused", clientAuth: broker.ClientAuthNone, maxVersion: tls.VersionTLS11, wantErr: "protocol version"},
		{name: "require/no cert refused", clientAuth: broker.ClientAuthRequire, cert: noCert},
		{name: "require/no cert refused TLS 1.2", clientAuth: broker.ClientAuthRequire, cert: noCert, maxVersion: tls.VersionTLS12},
		{name: "require/CA-signed cert", clientAuth: broker.ClientAuthRequire, cert: caSigned, wantOK: true},
		{name: "require/foreign cert refused", clientAuth: broker.ClientAuthRequire, cert: foreign},
		{name: "optional/no cert", clientAuth: broker.ClientAuthOptional, cert: noCert, wantOK: true},
		{name: "optional/CA-signed cert", clientAuth: broker.ClientAuthOptional, cert: caSigned, wantOK: true},
		{name: "optional/foreign cert refused", clientAuth: broker.ClientAuthOptional, cert: foreign},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := testutil.StartHub(t, withTLS(pki, tc.clientAuth))
			cfg := &tls.Config{RootCAs: pki.Roots, MaxVersion: tc.maxVersion, NextProtos: []string{"mqtt"}}
			if tc.maxVersion != 0 && tc.maxVersion < tls.VersionTLS12 {
				cfg.MinVersion = tls.VersionTLS10 // Go clients offer only 1.2+ by default
			}
			switch tc.cert {
			case caSigned:
				cfg.Certificates = []tls.Certificate{pki.Client}
			case foreign:
				// Certificates would not do: Go clients send none when no
				// certificate matches the CAs the server asks for.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pki.Foreign, nil }
			}
			id := "tls-client-" + string(rune('a'+i))

			conn, err := dialTLS(hub.TLSAddr(), cfg)
			if err == nil {
				// With TLS 1.3 the server checks the client certificate after
				// the client considers the handshake done: a refusal shows up
				// on the first read, that is, instead of the CONNACK.
				var c *testutil.Client
				c, _, err = testutil.TryConnect(conn, &paho.Connect{ClientID: id, CleanStart: true})
				if err == nil && !tc.wantOK {
					_ = c.Disconnect(&paho.Disconnect{})
					t.Fatalf("the hub accepted the client; want it refused")
				}
				if err == nil {
					t.Cleanup(func() {
						_ = c.Disconnect(&paho.Disconnect{})
						select {
						case <-c.Done():
						case <-time.After(5 * time.Second):
							t.Errorf("client %s did not stop", id)
						}
					})
					state := conn.ConnectionState()
					if state.Version < tls.VersionTLS12 {
						t.Errorf("negotiated TLS version %x, want 1.2 or later", state.Version)
					}
					if state.NegotiatedProtocol != "" {
						// The hub offers no ALPN protocol, so that clients offering
						// any list (or none) are all accepted.
						t.Errorf("ALPN protocol %q negotiated, want none", state.NegotiatedProtocol)
					}
					expectRoundTrip(t, c, c, "tls/"+id, 1, []byte("over TLS"))
					return
				}
			}
			if tc.wantOK {
				t.Fatalf("connect over TLS: %v", err)
			}
			t.Logf("refused as expected: %v", err)
			if tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// TestTLSAndTCPShareTopics checks that TLS and plain TCP clients of one hub
// see each other's messages.
func TestTLSAndTCPShareTopics(t *testing.T) {
	pki := newTestPKI(t)
	hub := testutil.StartHub(t, withTLS(pki, broker.ClientAuthNone))
	conn, err := dialTLS(hub.TLSAddr(), &tls.Config{RootCAs: pki.Roots})
	if err != nil {
		t.Fatalf("dial TLS: %v", err)
	}
	overTLS := testutil.Connect(t, conn, &paho.Connect{ClientID: "over-tls", CleanStart: true})
	overTCP := testutil.Connect(t, testutil.Dial(t, hub.MQTTAddr()), &paho.Connect{ClientID: "over-tcp", CleanStart: true})
	for qos := byte(0); qos <= 2; qos++ {
		expectRoundTrip(t, overTLS, overTCP, "tls/to-tcp", qos, []byte("from TLS"))
		expectRoundTrip(t, overTCP, overTLS, "tcp/to-tls", qos, []byte("from TCP"))
	}
}

func TestTLSConfigValidate(t *testing.T) {
	pki := newTestPKI(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")

	cases := []struct {
		name    string
		change  func(*broker.Config)
		wantErr string // "" means valid
	}{
		{"require with CA", func(c *broker.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.TLSClientAuth = pki.ServerCert, pki.ServerKey, pki.CAFile, broker.ClientAuthRequire
		}, ""},
		{"require without CA", func(c *broker.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientAuth = pki.ServerCert, pki.ServerKey, broker.ClientAuthRequire
		}, `tls-client-auth: "require" needs tls-client-ca`},
		{"optional without CA", func(c *broker.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientAuth = pki.ServerCert, pki.ServerKey, broker.ClientAuthOptional
		}, `tls-client-auth: "optional" needs tls-client-ca`},
		{"cert without key", func(c *broker.Config) { c.TLSCert = pki.ServerCert }, "tls-cert and tls-key: both must be set"},
		{"key without cert", func(c *broker.Config) { c.TLSKey = pki.ServerKey }, "tls-cert and tls-key: both must be set"},
		{"unknown client auth", func(c *broker.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.TLSClientAuth = pki.ServerCert, pki.ServerKey, pki.CAFile, "sometimes"
		}, `tls-client-auth: "sometimes" is not one of none, optional, require`},
		{"missing cert file", func(c *broker.Config) { c.TLSCert, c.TLSKey = missing, pki.ServerKey }, "tls-cert: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testutil.TestConfig(t)
			tc.change(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.wantErr)
			}
			// New validates too: the hub does not start.
			if b, err := broker.New(cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				if b != nil {
					_ = b.Shutdown(t.Context())
				}
				t.Fatalf("New: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}

	// Files that exist but hold no usable PEM pass Validate and fail New.
	for _, tc := range []struct {
		name    string
		change  func(*broker.Config)
		wantErr string
	}{
		{"garbage cert", func(c *broker.Config) { c.TLSCert, c.TLSKey = garbage, pki.ServerKey }, "tls-cert/tls-key"},
		{"key of another cert", func(c *broker.Config) { c.TLSCert, c.TLSKey = pki.ServerCert, pki.ClientKey }, "tls-cert/tls-key"},
		{"garbage client CA", func(c *broker.Config) {
			c.TLSCert, c.TLSKey, c.TLSClientCA, c.TLSClientAuth = pki.ServerCert, pki.ServerKey, garbage, broker.ClientAuthRequire
		}, "tls-client-ca: no PEM certificate found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testutil.TestConfig(t)
			tc.change(&cfg)
			b, err := broker.New(cfg, zerolog.Nop())
			if err == nil {
				_ = b.Shutdown(t.Context())
				t.Fatalf("New accepted %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestTLSMosquitto(t *testing.T) {
	testutil.RequireTool(t, "mosquitto_sub", "mosquitto-clients")
	testutil.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	pki := newTestPKI(t)

	for _, tc := range []struct {
		name       string
		clientAuth string
		certArgs   []string // client certificate options for both tools
	}{
		{"server cert only", broker.ClientAuthNone, nil},
		{"client cert required", broker.ClientAuthRequire, []string{"--cert", pki.ClientCert, "--key", pki.ClientKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := testutil.StartHub(t, withTLS(pki, tc.clientAuth))
			prober := newMosqProber(t, hub)
			tlsArgs := mosqArgs(mosqHostPort(t, hub.TLSAddr()), []string{"--cafile", pki.CAFile}, tc.certArgs)
			const topic, probe = "t", "t-probe"

			sub := startMosq(t, "mosquitto_sub", mosqArgs(tlsArgs, []string{"-q", "1", "-t", topic, "-t", probe, "-F", "MSG %q %t %p"})...)
			sub.awaitProbe(t, prober, probe)
			if out, err := runMosq(t, "mosquitto_pub", mosqArgs(tlsArgs, []string{"-q", "1", "-t", topic, "-m", "hello over TLS"})...); err != nil {
				t.Fatalf("mosquitto_pub over TLS: %v\n%s", err, out)
			}
			got := sub.waitLine(t, mosqLineTimeout, "the message", func(l string) bool { return isMosqMsg(l) && !strings.Contains(l, probe) })
			if want := "MSG 1 t hello over TLS"; got != want {
				t.Errorf("mosquitto_sub printed %q, want %q", got, want)
			}

			if tc.certArgs != nil {
				// The same publication without the client certificate fails.
				out, err := runMosq(t, "mosquitto_pub", mosqArgs(mosqHostPort(t, hub.TLSAddr()), []string{"--cafile", pki.CAFile, "-t", topic, "-m", "no cert"})...)
				if err == nil {
					t.Errorf("mosquitto_pub without a client certificate succeeded:\n%s", out)
				} else {
					t.Logf("refused as expected: %v: %s", err, strings.TrimSpace(out))
				}
			}
		})
	}
}

func TestTLSHandshakeFailureCounted(t *testing.T) {
	pki := newTestPKI(t)
	hub := testutil.StartHub(t, withTLS(pki, broker.ClientAuthNone))
	// Plain MQTT bytes on the TLS port are not a handshake.
	conn := testutil.Dial(t, hub.TLSAddr())
	if _, err := conn.Write(connectBytes(5, "plain")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn, 5*time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := metric(t, hub, `mqhub_connection_errors_total{reason="tls_handshake"}`); got != "1" {
			return fmt.Errorf("tls_handshake counter = %q, want 1", got)
		}
		return nil
	})
}

// TestClientCertificateNamesTheUser: with client certificates required,
// the certificate's common name is the user, without a password, and the
// access rules apply to that user.
func TestClientCertificateNamesTheUser(t *testing.T) {
	pki := newTestPKI(t)
	hub := testutil.StartHub(t, withTLS(pki, broker.ClientAuthRequire), func(c *broker.Config) { c.AllowAnonymous = false })
	conn, err := dialTLS(hub.TLSAddr(), &tls.Config{RootCAs: pki.Roots, Certificates: []tls.Certificate{pki.Client}})
	if err != nil {
		t.Fatal(err)
	}
	c := testutil.Connect(t, conn, &paho.Connect{ClientID: "cert-device", CleanStart: true})
	c.Subscribe(t, "u/mqhub test client/inbox", 1) // the certificate's CN
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "u/bob/inbox", QoS: 1}}})
	if ack == nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 0x87 {
		t.Fatalf("subscribe to another user's inbox: %+v, %v; want 0x87", ack, err)
	}
	// A user name that differs from the certificate is refused.
	conn, err = dialTLS(hub.TLSAddr(), &tls.Config{RootCAs: pki.Roots, Certificates: []tls.Certificate{pki.Client}})
	if err != nil {
		t.Fatal(err)
	}
	_, connack, err := testutil.TryConnect(conn, &paho.Connect{ClientID: "cert-2", CleanStart: true,
		UsernameFlag: true, Username: "bob", PasswordFlag: true, Password: []byte("x")})
	if err == nil || connack == nil || connack.ReasonCode != 0x86 {
		t.Fatalf("user name differing from the certificate: %+v, %v; want 0x86", connack, err)
	}
}
