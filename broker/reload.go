package broker

import (
	"errors"
	"fmt"
)

// Reload reads again the files an operator changes while the hub runs
// (`mqhub serve` calls it on SIGHUP): the ACL file, and the TLS
// certificate, key and client CA. Each part that reads back valid takes
// effect at once: ACL checks from now on (including the send-time checks of
// messages already queued) use the new rules, and new TLS handshakes the
// new certificate, while established connections keep theirs. A part that
// is invalid keeps its previous configuration; the error says which and
// why, and is logged. Other options need a restart.
func (b *Broker) Reload() error {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	if b.closed.Load() {
		return ErrClosed
	}
	var reloaded []string
	var errs []error
	if b.cfg.ACLFile != "" {
		if acl, err := loadACL(b.cfg.ACLFile); err != nil {
			errs = append(errs, err)
		} else {
			b.auth.SetACL(acl)
			reloaded = append(reloaded, "acl-file")
		}
	}
	if b.tlsFiles != nil {
		if err := b.tlsFiles.reload(); err != nil {
			errs = append(errs, err)
		} else {
			reloaded = append(reloaded, "tls-cert", "tls-key")
			if b.cfg.TLSClientCA != "" {
				reloaded = append(reloaded, "tls-client-ca")
			}
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("reload: %w", err)
		b.log.Error().Err(err).Msg("reload: invalid files kept their previous configuration")
	}
	switch {
	case len(reloaded) > 0:
		b.log.Info().Strs("reloaded", reloaded).Msg("configuration reloaded")
	case err == nil:
		b.log.Info().Msg("reload: nothing to reload (no acl-file, no TLS listener)")
	}
	return err
}
