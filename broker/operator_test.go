package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqhub/mqhub/broker"
	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/internal/version"
)

// TestSysVersionIsMqhubs subscribes an admin to $SYS/broker/version: the
// payload is mqhub's version, not the embedded mochi's.
func TestSysVersionIsMqhubs(t *testing.T) {
	h := startSecureHub(t, testACL)
	root := h.mustLogin(t, "root", "root-console")
	root.Subscribe(t, "$SYS/broker/version", 0)
	deadline := time.After(10 * time.Second) // $SYS is published every second
	for {
		select {
		case m := <-root.Messages:
			if m.Topic != "$SYS/broker/version" {
				continue
			}
			if got := string(m.Payload); got != version.String() || got == mqtt.Version {
				t.Fatalf("$SYS/broker/version = %q, want mqhub's %q (mochi is %q)", got, version.String(), mqtt.Version)
			}
			return
		case <-deadline:
			t.Fatal("no $SYS/broker/version message within 10s")
		}
	}
}

// subscribeReason subscribes to filter and returns the SUBACK reason code.
func subscribeReason(t *testing.T, c *testutil.Client, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, _ := c.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if ack == nil || len(ack.Reasons) != 1 {
		t.Fatalf("subscribe %q: SUBACK %+v", filter, ack)
	}
	return ack.Reasons[0]
}

const reloadACLBefore = `
user alice
topic readwrite shared/#
topic write news/#
user bob
topic read news/#
topic read shared/#
`

// reloadACLAfter gives alice extra/# and takes news/# from bob.
const reloadACLAfter = `
user alice
topic readwrite shared/#
topic readwrite extra/#
topic write news/#
user bob
topic read shared/#
`

// TestReloadACL changes the ACL file under a running hub and reloads: a
// topic newly allowed can be subscribed to, a topic newly denied can no
// longer be subscribed to, and an existing subscription to it receives
// nothing more, all without reconnecting.
func TestReloadACL(t *testing.T) {
	h := startSecureHub(t, reloadACLBefore)
	alice := h.mustLogin(t, "alice", "alice-phone")
	bob := h.mustLogin(t, "bob", "bob-phone")
	if code := subscribeReason(t, alice, "extra/#"); code != 0x87 {
		t.Fatalf("alice's extra/# before the reload: reason 0x%02x, want 0x87", code)
	}
	bob.Subscribe(t, "news/#", 1)
	bob.Subscribe(t, "shared/#", 1)

	if err := os.WriteFile(h.Config().ACLFile, []byte(reloadACLAfter), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}

	if code := subscribeReason(t, alice, "extra/#"); code != 0x01 {
		t.Fatalf("alice's extra/# after the reload: reason 0x%02x, want granted QoS 1", code)
	}
	if code := subscribeReason(t, bob, "news/today"); code != 0x87 {
		t.Fatalf("bob's news/today after the reload: reason 0x%02x, want 0x87", code)
	}
	// bob's news/# subscription predates the reload: the message on news/
	// is not delivered, the one after it on shared/ is (one queue, in order).
	alice.Publish(t, &paho.Publish{Topic: "news/today", QoS: 1, Payload: []byte("revoked")})
	alice.Publish(t, &paho.Publish{Topic: "shared/doc", QoS: 1, Payload: []byte("still allowed")})
	if m := bob.Next(t, 5*time.Second); m.Topic != "shared/doc" {
		t.Fatalf("bob received %q on %s; news/ was revoked by the reload", m.Payload, m.Topic)
	}
}

// TestReloadInvalidACLKeepsRules reloads a broken ACL file: Reload fails
// naming the line, and the previous rules stay in force.
func TestReloadInvalidACLKeepsRules(t *testing.T) {
	h := startSecureHub(t, reloadACLBefore)
	alice := h.mustLogin(t, "alice", "alice-phone")
	if err := os.WriteFile(h.Config().ACLFile, []byte("user alice\ntopic readwrite extra/#\ntopik read #\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := h.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("reload of an invalid ACL file: %v, want an error naming line 3", err)
	}
	if code := subscribeReason(t, alice, "extra/#"); code != 0x87 {
		t.Fatalf("alice's extra/# after a failed reload: reason 0x%02x, want 0x87 (old rules)", code)
	}
	if code := subscribeReason(t, alice, "shared/#"); code != 0x01 {
		t.Fatalf("alice's shared/# after a failed reload: reason 0x%02x, want granted (old rules)", code)
	}
}

// TestReloadTLSCertificate replaces the server certificate and key under a
// running hub: after Reload a new handshake gets the new certificate, a
// client connected before keeps working, and a broken certificate file
// fails the reload and keeps the current one.
func TestReloadTLSCertificate(t *testing.T) {
	old, renewed := newTestPKI(t), newTestPKI(t)
	hub := testutil.StartHub(t, withTLS(old, broker.ClientAuthNone))
	roots := x509.NewCertPool()
	roots.AddCert(caCertOf(t, old))
	roots.AddCert(caCertOf(t, renewed))
	servedCert := func() []byte {
		t.Helper()
		conn, err := dialTLS(hub.TLSAddr(), &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(servedCert(), leafOf(t, old)) {
		t.Fatal("the hub does not serve its configured certificate")
	}
	conn, err := dialTLS(hub.TLSAddr(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.Connect(t, conn, &paho.Connect{ClientID: "before-reload", CleanStart: true})

	copyFile(t, renewed.ServerCert, old.ServerCert)
	copyFile(t, renewed.ServerKey, old.ServerKey)
	if err := hub.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !bytes.Equal(servedCert(), leafOf(t, renewed)) {
		t.Fatal("a handshake after the reload still gets the old certificate")
	}
	expectRoundTrip(t, before, before, "tls/after-reload", 1, []byte("same connection"))

	if err := os.WriteFile(old.ServerCert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := hub.Reload(); err == nil || !strings.Contains(err.Error(), "tls-cert") {
		t.Fatalf("reload of a broken certificate: %v, want a tls-cert error", err)
	}
	if !bytes.Equal(servedCert(), leafOf(t, renewed)) {
		t.Fatal("a failed reload changed the served certificate")
	}
}

// TestReloadAfterShutdown: nothing to reload once the hub is stopped.
func TestReloadAfterShutdown(t *testing.T) {
	hub := testutil.StartHub(t)
	if err := hub.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := hub.Reload(); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("reload after shutdown: %v, want ErrClosed", err)
	}
}

func caCertOf(t *testing.T, p *testPKI) *x509.Certificate {
	t.Helper()
	return parsePEMCert(t, p.CAFile)
}

func leafOf(t *testing.T, p *testPKI) []byte {
	t.Helper()
	return parsePEMCert(t, p.ServerCert).Raw
}

// parsePEMCert reads the first certificate of a PEM file.
func parsePEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
