package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

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
