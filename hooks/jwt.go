package hooks

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken is returned, wrapped with the reason, for every JWT that
// Verify refuses. The message never holds the token or any of its claims.
var ErrInvalidToken = errors.New("invalid token")

var (
	errMethodNotAccepted = errors.New("signing method not accepted")
	errCriticalHeader    = errors.New("critical header extensions not supported")
	errBadSubject        = errors.New("sub claim is not a usable user name")
)

const (
	minHMACSecretLen = 32   // bytes, as RFC 7518 asks for HS256
	minRSABits       = 2048 // bits of an RS256 key
	maxJWTLen        = 16 << 10
)

// JWTOptions configures JWT login. Any subset of the three key files may be
// set; each one enables its algorithm and no other.
type JWTOptions struct {
	// HMACSecretFile holds the raw HS256 secret, at least 32 bytes. One
	// trailing newline ("\n" or "\r\n") is trimmed.
	HMACSecretFile string
	// RSAPublicKeyFile is a PEM "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY"
	// (PKCS #1) block, at least 2048 bits, enabling RS256.
	RSAPublicKeyFile string
	// Ed25519PublicKeyFile is a PEM "PUBLIC KEY" (PKIX) block enabling
	// EdDSA.
	Ed25519PublicKeyFile string
	// Issuer, when set, must equal the token's iss claim.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// Leeway is the clock skew allowed when checking exp and nbf.
	Leeway time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// JWTVerifier checks JWTs given as MQTT passwords. It is safe for
// concurrent use. Verify costs microseconds for HS256 and EdDSA and some
// tens of microseconds for RS256, so it may run in a hook.
type JWTVerifier struct {
	hmacSecret []byte
	rsaKey     *rsa.PublicKey
	edKey      ed25519.PublicKey
	methods    []string // algorithms whose key is configured
	issuer     string
	audience   string
	parser     *jwt.Parser
}

// NewJWTVerifier loads the configured key files and returns every problem
// found, joined.
//
// When no key file is set, JWT login is off: NewJWTVerifier returns a nil
// verifier and a nil error, and (*JWTVerifier)(nil).Verify refuses every
// token.
func NewJWTVerifier(opts JWTOptions) (*JWTVerifier, error) {
	if opts.HMACSecretFile == "" && opts.RSAPublicKeyFile == "" && opts.Ed25519PublicKeyFile == "" {
		return nil, nil
	}
	v := &JWTVerifier{issuer: opts.Issuer, audience: opts.Audience}
	var errs []error
	if opts.HMACSecretFile != "" {
		secret, err := loadHMACSecret(opts.HMACSecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwt hmac secret %s: %w", opts.HMACSecretFile, err))
		} else {
			v.hmacSecret = secret
			v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
		}
	}
	if opts.RSAPublicKeyFile != "" {
		key, err := loadRSAPublicKey(opts.RSAPublicKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwt rsa public key %s: %w", opts.RSAPublicKeyFile, err))
		} else {
			v.rsaKey = key
			v.methods = append(v.methods, jwt.SigningMethodRS256.Alg())
		}
	}
	if opts.Ed25519PublicKeyFile != "" {
		key, err := loadEd25519PublicKey(opts.Ed25519PublicKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwt ed25519 public key %s: %w", opts.Ed25519PublicKeyFile, err))
		} else {
			v.edKey = key
			v.methods = append(v.methods, jwt.SigningMethodEdDSA.Alg())
		}
	}
	if opts.Leeway < 0 {
		errs = append(errs, fmt.Errorf("jwt leeway %v is negative", opts.Leeway))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	parserOpts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithStrictDecoding(),
	}
	if opts.Issuer != "" {
		parserOpts = append(parserOpts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		parserOpts = append(parserOpts, jwt.WithAudience(opts.Audience))
	}
	if opts.Now != nil {
		parserOpts = append(parserOpts, jwt.WithTimeFunc(opts.Now))
	}
	v.parser = jwt.NewParser(parserOpts...)
	return v, nil
}

func loadHMACSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if trimmed, ok := bytes.CutSuffix(b, []byte("\n")); ok {
		b, _ = bytes.CutSuffix(trimmed, []byte("\r"))
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		// A public key used as an HMAC secret is the algorithm-confusion
		// attack: anyone holding the public key could sign tokens.
		return nil, errors.New("holds a PEM block; the HMAC secret must be random bytes, not a key file")
	}
	if len(b) < minHMACSecretLen {
		return nil, fmt.Errorf("secret is %d bytes, want at least %d", len(b), minHMACSecretLen)
	}
	return b, nil
}

func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not a PEM file")
	}
	return block, nil
}

func loadRSAPublicKey(path string) (*rsa.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var key *rsa.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("holds a %T, not an RSA public key", pub)
		}
		key = k
	case "RSA PUBLIC KEY":
		if key, err = x509.ParsePKCS1PublicKey(block.Bytes); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("PEM block is %q, want \"PUBLIC KEY\" or \"RSA PUBLIC KEY\"", block.Type)
	}
	if bits := key.N.BitLen(); bits < minRSABits {
		return nil, fmt.Errorf("key is %d bits, want at least %d", bits, minRSABits)
	}
	return key, nil
}

func loadEd25519PublicKey(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	key, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("holds a %T, not an Ed25519 public key", pub)
	}
	return key, nil
}

// Verify checks a JWT's signature and its exp, nbf, iss and aud claims and
// returns its sub claim as the user name.
//
// Only the algorithms whose key is configured are accepted, each verified
// with its own key only, so "none" and algorithm confusion (an HS256 token
// keyed with the RSA public key) are refused. exp is required. The sub
// claim must be non-empty and free of '+', '#', '/' and control characters,
// so that as a user name it cannot widen an ACL pattern.
//
// Every error wraps ErrInvalidToken.
func (v *JWTVerifier) Verify(token string) (user string, err error) {
	if v == nil {
		return "", fmt.Errorf("%w: jwt login is off", ErrInvalidToken)
	}
	if len(token) > maxJWTLen {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxJWTLen)
	}
	var claims jwt.RegisteredClaims
	tok, err := v.parser.ParseWithClaims(token, &claims, v.keyFor)
	if err != nil {
		return "", v.refusal(tok, &claims, err)
	}
	if !tok.Valid {
		return "", fmt.Errorf("%w: not valid", ErrInvalidToken)
	}
	if !validJWTSubject(claims.Subject) {
		return "", fmt.Errorf("%w: %w", ErrInvalidToken, errBadSubject)
	}
	return claims.Subject, nil
}

// keyFor returns the key for the token's algorithm. Each key type goes only
// to its own method type, so the RSA key can never serve as an HMAC secret.
func (v *JWTVerifier) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCriticalHeader // RFC 7515 4.1.11: we understand none
	}
	if !slices.Contains(v.methods, t.Method.Alg()) {
		return nil, errMethodNotAccepted
	}
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.hmacSecret != nil && t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
			return v.hmacSecret, nil
		}
	case *jwt.SigningMethodRSA:
		if v.rsaKey != nil && t.Method.Alg() == jwt.SigningMethodRS256.Alg() {
			return v.rsaKey, nil
		}
	case *jwt.SigningMethodEd25519:
		if v.edKey != nil {
			return v.edKey, nil
		}
	}
	return nil, errMethodNotAccepted
}

// jwtClaimReasons are the claim failures reported, most useful first.
var jwtClaimReasons = []error{
	jwt.ErrTokenExpired,
	jwt.ErrTokenNotValidYet,
	jwt.ErrTokenInvalidIssuer,
	jwt.ErrTokenInvalidAudience,
	jwt.ErrTokenUsedBeforeIssued,
}

// refusal turns a parser error into one wrapping ErrInvalidToken and the
// library's sentinel. It is built from fixed texts only: the library's own
// messages may quote parts of the token.
func (v *JWTVerifier) refusal(tok *jwt.Token, claims *jwt.RegisteredClaims, err error) error {
	switch {
	case errors.Is(err, errCriticalHeader):
		return fmt.Errorf("%w: %w", ErrInvalidToken, errCriticalHeader)
	case tok != nil && tok.Method != nil && !slices.Contains(v.methods, tok.Method.Alg()):
		// Alg() is one of the library's registered names (an unknown alg
		// fails earlier), so printing it quotes nothing arbitrary.
		return fmt.Errorf("%w: %w: %s", ErrInvalidToken, errMethodNotAccepted, tok.Method.Alg())
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %w", ErrInvalidToken, jwt.ErrTokenMalformed)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return fmt.Errorf("%w: %w", ErrInvalidToken, jwt.ErrTokenSignatureInvalid)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		var missing []string
		if claims.ExpiresAt == nil {
			missing = append(missing, "exp")
		}
		if v.issuer != "" && claims.Issuer == "" {
			missing = append(missing, "iss")
		}
		if v.audience != "" && len(claims.Audience) == 0 {
			missing = append(missing, "aud")
		}
		return fmt.Errorf("%w: %w: %s", ErrInvalidToken, jwt.ErrTokenRequiredClaimMissing, strings.Join(missing, ", "))
	}
	for _, reason := range jwtClaimReasons {
		if errors.Is(err, reason) {
			return fmt.Errorf("%w: %w", ErrInvalidToken, reason)
		}
	}
	if errors.Is(err, jwt.ErrTokenUnverifiable) {
		return fmt.Errorf("%w: %w", ErrInvalidToken, jwt.ErrTokenUnverifiable)
	}
	return fmt.Errorf("%w: %w", ErrInvalidToken, jwt.ErrTokenInvalidClaims)
}

// validJWTSubject reports whether sub may serve as an MQTT user name: not
// empty, no wildcard or level separator (which would widen a %u pattern) and
// no control character.
func validJWTSubject(sub string) bool {
	if sub == "" || strings.ContainsAny(sub, "+#/") {
		return false
	}
	return !strings.ContainsFunc(sub, unicode.IsControl)
}

// LooksLikeJWT reports whether an MQTT password has the shape of a JWT:
// three base64url segments separated by dots, the first decoding to a JSON
// object with an "alg" member. It is a cheap test that keeps ordinary
// passwords away from the JWT parser; it checks no signature.
func LooksLikeJWT(password []byte) bool {
	if len(password) > maxJWTLen || bytes.Count(password, []byte(".")) != 2 {
		return false
	}
	header, rest, _ := bytes.Cut(password, []byte("."))
	claims, sig, _ := bytes.Cut(rest, []byte("."))
	if len(header) == 0 || len(claims) == 0 || !isBase64URL(header) || !isBase64URL(claims) || !isBase64URL(sig) {
		return false
	}
	raw := make([]byte, base64.RawURLEncoding.DecodedLen(len(header)))
	n, err := base64.RawURLEncoding.Decode(raw, header)
	if err != nil {
		return false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw[:n], &fields) != nil {
		return false
	}
	_, ok := fields["alg"]
	return ok
}

// isBase64URL reports whether b uses only the unpadded base64url alphabet.
func isBase64URL(b []byte) bool {
	for _, c := range b {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
