package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// tlsFiles is the TLS listener's configuration, read from the files named
// in the Config and read again by Reload. Each handshake takes the one
// current when it starts, so a renewed certificate serves new connections
// while established ones keep the session they negotiated.
type tlsFiles struct {
	cfg     Config
	current atomic.Pointer[tls.Config]
}

// newTLSFiles reads the certificate, key and client CA once.
func newTLSFiles(cfg Config) (*tlsFiles, error) {
	f := &tlsFiles{cfg: cfg}
	return f, f.reload()
}

// reload reads the files again; on error the previous configuration stays.
func (f *tlsFiles) reload() error {
	tc, err := tlsConfig(f.cfg)
	if err != nil {
		return err
	}
	f.current.Store(tc)
	return nil
}

// listenerConfig is the configuration the listener wraps its sockets
// with: it only hands each handshake the current one.
func (f *tlsFiles) listenerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.current.Load(), nil
		},
	}
}

// tlsConfig loads the server certificate and, when configured, the CA that
// client certificates must chain to. TLS 1.2 is the minimum.
func tlsConfig(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// No NextProtos: Go refuses a client whose ALPN list has no match,
		// and MQTT clients offer all sorts ("mqtt", "x-amzn-mqtt-ca", none).
	}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls-client-ca: no PEM certificate found")
		}
		tc.ClientCAs = pool
	}
	switch cfg.TLSClientAuth {
	case ClientAuthOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}
