package hooks

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// jwtTestNow is the verifiers' clock in these tests.
var jwtTestNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const (
	jwtTestIssuer   = "https://id.example"
	jwtTestAudience = "mqhub"
)

// jwtKeys is one set of signing keys.
type jwtKeys struct {
	hmac []byte
	rsa  *rsa.PrivateKey
	ed   ed25519.PrivateKey
}

// jwtTestKeys returns the keys the verifiers trust and a second, unrelated
// set. RSA generation is slow, so both are made once per test binary.
var jwtTestKeys = sync.OnceValues(func() (good, other jwtKeys) {
	gen := func() jwtKeys {
		k := jwtKeys{hmac: make([]byte, 64)}
		if _, err := rand.Read(k.hmac); err != nil {
			panic(err)
		}
		// The secret file loader trims one trailing newline; a random
		// secret ending in one would not be the secret the tokens are
		// signed with (1 run in 128 failed that way).
		for k.hmac[len(k.hmac)-1] == '\n' || k.hmac[len(k.hmac)-1] == '\r' {
			k.hmac[len(k.hmac)-1] = 'x'
		}
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		return k
	}
	return gen(), gen()
})

// jwtKeyFiles are the key files of one jwtKeys, written to a temp dir.
type jwtKeyFiles struct {
	hmac, rsa, rsaPKCS1, ed string
	rsaPEM                  []byte // PKIX PEM of the RSA public key
}

func writeJWTKeyFiles(t testing.TB, k jwtKeys) jwtKeyFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkix := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	f := jwtKeyFiles{rsaPEM: pkix(&k.rsa.PublicKey)}
	f.hmac = write("hmac.secret", append(append([]byte(nil), k.hmac...), '\n'))
	f.rsa = write("rsa.pem", f.rsaPEM)
	f.rsaPKCS1 = write("rsa-pkcs1.pem", pem.EncodeToMemory(&pem.Block{
		Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey),
	}))
	f.ed = write("ed25519.pem", pkix(k.ed.Public()))
	return f
}

func newTestJWTVerifier(t testing.TB, opts JWTOptions) *JWTVerifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return jwtTestNow }
	}
	v, err := NewJWTVerifier(opts)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	if v == nil {
		t.Fatal("NewJWTVerifier returned a nil verifier")
	}
	return v
}

// signJWT signs claims with method and key, failing the test on error.
func signJWT(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// jwtSeg base64url-encodes one segment.
func jwtSeg(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// goodClaims returns claims valid at jwtTestNow, changed by edit.
func goodClaims(sub string, edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": sub,
		"iss": jwtTestIssuer,
		"aud": jwtTestAudience,
		"iat": jwtTestNow.Add(-time.Minute).Unix(),
		"nbf": jwtTestNow.Add(-time.Minute).Unix(),
		"exp": jwtTestNow.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func TestJWTVerify(t *testing.T) {
	good, other := jwtTestKeys()
	files := writeJWTKeyFiles(t, good)

	all := JWTOptions{
		HMACSecretFile: files.hmac, RSAPublicKeyFile: files.rsa, Ed25519PublicKeyFile: files.ed,
		Issuer: jwtTestIssuer, Audience: jwtTestAudience,
	}
	verifiers := map[string]*JWTVerifier{
		"all":      newTestJWTVerifier(t, all),
		"leeway":   newTestJWTVerifier(t, JWTOptions{HMACSecretFile: files.hmac, Leeway: time.Minute}),
		"hmac":     newTestJWTVerifier(t, JWTOptions{HMACSecretFile: files.hmac}),
		"rsa":      newTestJWTVerifier(t, JWTOptions{RSAPublicKeyFile: files.rsa}),
		"rsaPKCS1": newTestJWTVerifier(t, JWTOptions{RSAPublicKeyFile: files.rsaPKCS1}),
		"hmac+rsa": newTestJWTVerifier(t, JWTOptions{HMACSecretFile: files.hmac, RSAPublicKeyFile: files.rsa}),
		"ed":       newTestJWTVerifier(t, JWTOptions{Ed25519PublicKeyFile: files.ed}),
	}

	hs := func(c jwt.MapClaims) string { return signJWT(t, jwt.SigningMethodHS256, good.hmac, c) }
	rs := func(c jwt.MapClaims) string { return signJWT(t, jwt.SigningMethodRS256, good.rsa, c) }
	ed := func(c jwt.MapClaims) string { return signJWT(t, jwt.SigningMethodEdDSA, good.ed, c) }
	without := func(claim string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, claim) } }
	set := func(claim string, value any) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) { c[claim] = value }
	}
	// noneToken is built by hand: the library will not sign with "none".
	noneToken := func(alg string) string {
		return jwtSeg(`{"alg":"`+alg+`","typ":"JWT"}`) + "." +
			jwtSeg(`{"sub":"mallory","iss":"`+jwtTestIssuer+`","aud":"`+jwtTestAudience+`","exp":`+
				strconv.FormatInt(jwtTestNow.Add(time.Hour).Unix(), 10)+`}`) + "."
	}
	// The algorithm-confusion attack: HS256 keyed with the RSA public key,
	// which is public.
	confused := signJWT(t, jwt.SigningMethodHS256, files.rsaPEM, goodClaims("mallory", nil))

	for _, tc := range []struct {
		name     string
		verifier string
		token    string
		wantUser string
		wantErr  error // besides ErrInvalidToken
	}{
		{name: "HS256", verifier: "all", token: hs(goodClaims("alice", nil)), wantUser: "alice"},
		{name: "RS256", verifier: "all", token: rs(goodClaims("bob", nil)), wantUser: "bob"},
		{name: "RS256 PKCS1 key", verifier: "rsaPKCS1", token: rs(goodClaims("bob", nil)), wantUser: "bob"},
		{name: "EdDSA", verifier: "all", token: ed(goodClaims("carol", nil)), wantUser: "carol"},
		{name: "aud list", verifier: "all", token: ed(goodClaims("carol", set("aud", []string{"x", jwtTestAudience}))), wantUser: "carol"},
		{name: "unicode sub", verifier: "all", token: hs(goodClaims("zoë", nil)), wantUser: "zoë"},
		{name: "iss and aud unchecked when not configured", verifier: "hmac", token: hs(goodClaims("dave", func(c jwt.MapClaims) {
			delete(c, "iss")
			delete(c, "aud")
		})), wantUser: "dave"},

		{name: "expired", verifier: "all", token: hs(goodClaims("alice", set("exp", jwtTestNow.Add(-time.Second).Unix()))), wantErr: jwt.ErrTokenExpired},
		{name: "expired at now", verifier: "all", token: hs(goodClaims("alice", set("exp", jwtTestNow.Unix()))), wantErr: jwt.ErrTokenExpired},
		{name: "expired within leeway", verifier: "leeway", token: hs(goodClaims("alice", set("exp", jwtTestNow.Add(-30*time.Second).Unix()))), wantUser: "alice"},
		{name: "expired beyond leeway", verifier: "leeway", token: hs(goodClaims("alice", set("exp", jwtTestNow.Add(-2*time.Minute).Unix()))), wantErr: jwt.ErrTokenExpired},
		{name: "nbf in the future", verifier: "all", token: rs(goodClaims("bob", set("nbf", jwtTestNow.Add(time.Minute).Unix()))), wantErr: jwt.ErrTokenNotValidYet},
		{name: "nbf within leeway", verifier: "leeway", token: hs(goodClaims("alice", set("nbf", jwtTestNow.Add(30*time.Second).Unix()))), wantUser: "alice"},
		{name: "missing exp", verifier: "all", token: ed(goodClaims("carol", without("exp"))), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "missing exp, no iss or aud configured", verifier: "hmac", token: hs(goodClaims("carol", without("exp"))), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "exp not a number", verifier: "all", token: hs(goodClaims("alice", set("exp", "tomorrow"))), wantErr: jwt.ErrTokenMalformed},
		{name: "wrong issuer", verifier: "all", token: hs(goodClaims("alice", set("iss", "https://evil.example"))), wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "missing issuer", verifier: "all", token: hs(goodClaims("alice", without("iss"))), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "wrong audience", verifier: "all", token: rs(goodClaims("bob", set("aud", "other"))), wantErr: jwt.ErrTokenInvalidAudience},
		{name: "missing audience", verifier: "all", token: rs(goodClaims("bob", without("aud"))), wantErr: jwt.ErrTokenRequiredClaimMissing},

		{name: "HS256 other secret", verifier: "all", token: signJWT(t, jwt.SigningMethodHS256, other.hmac, goodClaims("alice", nil)), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "RS256 other key", verifier: "all", token: signJWT(t, jwt.SigningMethodRS256, other.rsa, goodClaims("bob", nil)), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "EdDSA other key", verifier: "all", token: signJWT(t, jwt.SigningMethodEdDSA, other.ed, goodClaims("carol", nil)), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "claims changed after signing", verifier: "all", token: func() string {
			parts := strings.Split(hs(goodClaims("alice", nil)), ".")
			forged := strings.Split(hs(goodClaims("admin", nil)), ".")
			return parts[0] + "." + forged[1] + "." + parts[2]
		}(), wantErr: jwt.ErrTokenSignatureInvalid},

		{name: "alg none", verifier: "all", token: noneToken("none"), wantErr: errMethodNotAccepted},
		{name: "alg None", verifier: "all", token: noneToken("None"), wantErr: jwt.ErrTokenUnverifiable},
		{name: "alg none with signature", verifier: "all", token: noneToken("none") + "c2ln", wantErr: errMethodNotAccepted},
		{name: "algorithm confusion, only RSA configured", verifier: "rsa", token: confused, wantErr: errMethodNotAccepted},
		{name: "algorithm confusion, HMAC and RSA configured", verifier: "hmac+rsa", token: confused, wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "RS256 with only HMAC configured", verifier: "hmac", token: rs(goodClaims("bob", nil)), wantErr: errMethodNotAccepted},
		{name: "EdDSA with only RSA configured", verifier: "rsa", token: ed(goodClaims("carol", nil)), wantErr: errMethodNotAccepted},
		{name: "HS512 with HMAC configured", verifier: "all", token: signJWT(t, jwt.SigningMethodHS512, good.hmac, goodClaims("alice", nil)), wantErr: errMethodNotAccepted},
		{name: "RS512 with RSA configured", verifier: "all", token: signJWT(t, jwt.SigningMethodRS512, good.rsa, goodClaims("bob", nil)), wantErr: errMethodNotAccepted},
		{name: "PS256 with RSA configured", verifier: "all", token: signJWT(t, jwt.SigningMethodPS256, good.rsa, goodClaims("bob", nil)), wantErr: errMethodNotAccepted},
		{name: "crit header", verifier: "all", token: func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims("alice", nil))
			tok.Header["crit"] = []string{"exp"}
			s, err := tok.SignedString(good.hmac)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}(), wantErr: errCriticalHeader},

		{name: "sub missing", verifier: "all", token: hs(goodClaims("", without("sub"))), wantErr: errBadSubject},
		{name: "sub empty", verifier: "all", token: hs(goodClaims("", nil)), wantErr: errBadSubject},
		{name: "sub with #", verifier: "all", token: hs(goodClaims("#", nil)), wantErr: errBadSubject},
		{name: "sub with +", verifier: "all", token: hs(goodClaims("a+b", nil)), wantErr: errBadSubject},
		{name: "sub with /", verifier: "all", token: rs(goodClaims("alice/x", nil)), wantErr: errBadSubject},
		{name: "sub with NUL", verifier: "all", token: hs(goodClaims("ali\x00ce", nil)), wantErr: errBadSubject},
		{name: "sub with newline", verifier: "all", token: hs(goodClaims("alice\n", nil)), wantErr: errBadSubject},
		{name: "sub with C1 control", verifier: "all", token: hs(goodClaims("alice\u0085", nil)), wantErr: errBadSubject},
		{name: "sub not a string", verifier: "all", token: hs(goodClaims("", set("sub", 42))), wantErr: jwt.ErrTokenMalformed},

		{name: "empty", verifier: "all", token: "", wantErr: jwt.ErrTokenMalformed},
		{name: "password", verifier: "all", token: "hunter2", wantErr: jwt.ErrTokenMalformed},
		{name: "two segments", verifier: "all", token: "a.b", wantErr: jwt.ErrTokenMalformed},
		{name: "four segments", verifier: "all", token: hs(goodClaims("alice", nil)) + ".x", wantErr: jwt.ErrTokenMalformed},
		{name: "header not base64", verifier: "all", token: "!!!." + jwtSeg(`{}`) + ".", wantErr: jwt.ErrTokenMalformed},
		{name: "header not JSON", verifier: "all", token: jwtSeg("nope") + "." + jwtSeg(`{}`) + ".", wantErr: jwt.ErrTokenMalformed},
		{name: "claims not JSON", verifier: "all", token: jwtSeg(`{"alg":"HS256"}`) + "." + jwtSeg("nope") + ".", wantErr: jwt.ErrTokenMalformed},
		{name: "padded segments", verifier: "all", token: strings.Replace(hs(goodClaims("alice", nil)), ".", "==.", 1), wantErr: jwt.ErrTokenMalformed},
		{name: "no alg", verifier: "all", token: jwtSeg(`{"typ":"JWT"}`) + "." + jwtSeg(`{}`) + ".", wantErr: jwt.ErrTokenUnverifiable},
		{name: "too long", verifier: "all", token: hs(goodClaims("alice", set("pad", strings.Repeat("x", maxJWTLen))))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := verifiers[tc.verifier]
			user, err := v.Verify(tc.token)
			if tc.wantUser != "" {
				if err != nil || user != tc.wantUser {
					t.Fatalf("Verify = %q, %v; want %q, nil", user, err, tc.wantUser)
				}
				return
			}
			if err == nil || user != "" {
				t.Fatalf("Verify = %q, %v; want an error", user, err)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %q does not wrap ErrInvalidToken", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q does not wrap %q", err, tc.wantErr)
			}
			for _, seg := range strings.Split(tc.token, ".") {
				if len(seg) >= 8 && strings.Contains(err.Error(), seg) {
					t.Errorf("error %q quotes the token", err)
				}
			}
		})
	}
}

func TestJWTVerifyNilVerifier(t *testing.T) {
	good, _ := jwtTestKeys()
	var v *JWTVerifier
	user, err := v.Verify(signJWT(t, jwt.SigningMethodHS256, good.hmac, goodClaims("alice", nil)))
	if err == nil || user != "" || !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("nil verifier: Verify = %q, %v; want ErrInvalidToken", user, err)
	}
}

func TestJWTVerifyUsesClock(t *testing.T) {
	good, _ := jwtTestKeys()
	files := writeJWTKeyFiles(t, good)
	now := jwtTestNow
	v := newTestJWTVerifier(t, JWTOptions{HMACSecretFile: files.hmac, Now: func() time.Time { return now }})
	tok := signJWT(t, jwt.SigningMethodHS256, good.hmac, goodClaims("alice", nil))
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	now = jwtTestNow.Add(2 * time.Hour)
	if _, err := v.Verify(tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("after exp: err = %v, want expired", err)
	}
}

func TestNewJWTVerifier(t *testing.T) {
	good, _ := jwtTestKeys()
	files := writeJWTKeyFiles(t, good)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret32 := []byte(strings.Repeat("k", 32))
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, err := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var (
		missing     = filepath.Join(dir, "missing")
		short       = write("short", append(secret32[:31:31], '\n')) // 31 bytes once the newline goes
		exact       = write("exact", append(secret32[:32:32], '\r', '\n'))
		pemSecret   = write("pem-secret", files.rsaPEM)
		notPEM      = write("not-pem", []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 user@host\n"))
		smallRSA    = write("small-rsa.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: smallDER}))
		privateType = write("private.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	)

	for _, tc := range []struct {
		name      string
		opts      JWTOptions
		wantNil   bool     // nil verifier and nil error
		wantErrs  []string // each must appear, one line each
		wantValid string   // an HS256 secret the verifier must accept
	}{
		{name: "no key file: JWT login off", opts: JWTOptions{Issuer: "x"}, wantNil: true},
		{name: "every key", opts: JWTOptions{HMACSecretFile: files.hmac, RSAPublicKeyFile: files.rsa, Ed25519PublicKeyFile: files.ed}},
		{name: "PKCS1 RSA key", opts: JWTOptions{RSAPublicKeyFile: files.rsaPKCS1}},
		{name: "32-byte secret, CRLF trimmed", opts: JWTOptions{HMACSecretFile: exact}, wantValid: string(secret32)},
		{name: "every problem listed", opts: JWTOptions{HMACSecretFile: short, RSAPublicKeyFile: missing, Ed25519PublicKeyFile: notPEM, Leeway: -time.Second},
			wantErrs: []string{short + ": secret is 31 bytes", missing + ": open", notPEM + ": not a PEM file", "leeway -1s is negative"}},
		{name: "wrong kinds of key", opts: JWTOptions{HMACSecretFile: pemSecret, RSAPublicKeyFile: files.ed, Ed25519PublicKeyFile: files.rsa},
			wantErrs: []string{pemSecret + ": holds a PEM block", files.ed + ": holds a ed25519.PublicKey", files.rsa + ": holds a *rsa.PublicKey"}},
		{name: "weak RSA key and private key PEM", opts: JWTOptions{RSAPublicKeyFile: smallRSA, Ed25519PublicKeyFile: privateType},
			wantErrs: []string{smallRSA + ": key is 1024 bits", privateType + `: PEM block is "PRIVATE KEY"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = func() time.Time { return jwtTestNow }
			v, err := NewJWTVerifier(tc.opts)
			switch {
			case tc.wantNil:
				if v != nil || err != nil {
					t.Fatalf("NewJWTVerifier = %v, %v; want nil, nil", v, err)
				}
			case len(tc.wantErrs) > 0:
				if v != nil || err == nil {
					t.Fatalf("NewJWTVerifier = %v, %v; want nil and an error", v, err)
				}
				msg := err.Error()
				for _, want := range tc.wantErrs {
					if !strings.Contains(msg, want) {
						t.Errorf("error lacks %q:\n%s", want, msg)
					}
				}
				if lines := strings.Count(msg, "\n") + 1; lines != len(tc.wantErrs) {
					t.Errorf("error has %d lines, want %d:\n%s", lines, len(tc.wantErrs), msg)
				}
			default:
				if v == nil || err != nil {
					t.Fatalf("NewJWTVerifier = %v, %v; want a verifier", v, err)
				}
			}
			if tc.wantValid != "" {
				tok := signJWT(t, jwt.SigningMethodHS256, []byte(tc.wantValid), goodClaims("alice", nil))
				if user, err := v.Verify(tok); err != nil || user != "alice" {
					t.Fatalf("Verify = %q, %v; want alice", user, err)
				}
			}
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	good, _ := jwtTestKeys()
	claims := goodClaims("alice", nil)
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{signJWT(t, jwt.SigningMethodHS256, good.hmac, claims), true},
		{signJWT(t, jwt.SigningMethodRS256, good.rsa, claims), true},
		{signJWT(t, jwt.SigningMethodEdDSA, good.ed, claims), true},
		{jwtSeg(`{"alg":"none"}`) + "." + jwtSeg(`{"sub":"x"}`) + ".", true}, // refused later by Verify
		{jwtSeg(`{"alg":1}`) + "." + jwtSeg(`{}`) + ".c2ln", true},

		{"", false},
		{"hunter2", false},
		{"correct.horse.battery", false},
		{"abc.def.ghi", false},
		{"..", false},
		{"a.b.c.d", false},
		{"p@ss.w0rd.with.dots", false},
		{jwtSeg(`{"typ":"JWT"}`) + "." + jwtSeg(`{}`) + ".c2ln", false},           // no alg
		{jwtSeg(`["alg"]`) + "." + jwtSeg(`{}`) + ".c2ln", false},                 // not an object
		{jwtSeg(`null`) + "." + jwtSeg(`{}`) + ".c2ln", false},                    // not an object
		{jwtSeg(`{"alg":"HS256"}`) + "..c2ln", false},                             // empty claims
		{"." + jwtSeg(`{}`) + ".c2ln", false},                                     // empty header
		{jwtSeg(`{"alg":"HS256"}`) + "=." + jwtSeg(`{}`) + ".c2ln", false},        // padding
		{jwtSeg(`{"alg":"HS256"}`) + "." + jwtSeg(`{}`) + ".c2+n", false},         // std alphabet
		{jwtSeg(`{"alg":"HS256"}`) + "." + jwtSeg(`{}`) + ".c2 n", false},         // space
		{jwtSeg(`{"alg":"HS256"}`) + "." + strings.Repeat("A", maxJWTLen), false}, // too long
	} {
		if got := LooksLikeJWT([]byte(tc.password)); got != tc.want {
			t.Errorf("LooksLikeJWT(%.40q) = %v, want %v", tc.password, got, tc.want)
		}
	}
}

func FuzzJWTVerify(f *testing.F) {
	good, other := jwtTestKeys()
	files := writeJWTKeyFiles(f, good)
	// unknown trusts keys the fuzzer never sees: nothing may pass it.
	unknown := newTestJWTVerifier(f, JWTOptions{
		HMACSecretFile: files.hmac, RSAPublicKeyFile: files.rsa, Ed25519PublicKeyFile: files.ed,
		Issuer: jwtTestIssuer, Audience: jwtTestAudience,
	})
	// known trusts a secret the fuzz function signs with, to check the sub
	// rules on whatever the fuzzer puts there.
	knownFiles := writeJWTKeyFiles(f, other)
	known := newTestJWTVerifier(f, JWTOptions{HMACSecretFile: knownFiles.hmac})

	claims := goodClaims("alice", nil)
	for _, s := range []string{
		"", "hunter2", "a.b.c", "..", "...",
		signJWT(f, jwt.SigningMethodHS256, other.hmac, claims),
		signJWT(f, jwt.SigningMethodRS256, other.rsa, claims),
		signJWT(f, jwt.SigningMethodEdDSA, other.ed, claims),
		signJWT(f, jwt.SigningMethodHS256, files.rsaPEM, claims), // algorithm confusion
		jwtSeg(`{"alg":"none","typ":"JWT"}`) + "." + jwtSeg(`{"sub":"alice","exp":9999999999}`) + ".",
		jwtSeg(`{"alg":"HS256","crit":["x"]}`) + "." + jwtSeg(`{"sub":"a/#","exp":9999999999}`) + ".c2ln",
		"alice/#", "a+b", "zoë", "\x00", "\u0085x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		LooksLikeJWT([]byte(s))
		if user, err := unknown.Verify(s); err == nil || user != "" || !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify accepted a token without a valid signature: %q, %v", user, err)
		}

		tok := signJWT(t, jwt.SigningMethodHS256, other.hmac, jwt.MapClaims{
			"sub": s, "exp": jwtTestNow.Add(time.Hour).Unix(),
		})
		user, err := known.Verify(tok)
		switch {
		case err != nil && !errors.Is(err, ErrInvalidToken):
			t.Fatalf("error %v does not wrap ErrInvalidToken", err)
		case err != nil && utf8.ValidString(s) && validJWTSubject(s) && len(tok) <= maxJWTLen:
			t.Fatalf("Verify refused sub %q: %v", s, err)
		case err == nil && !validJWTSubject(user):
			t.Fatalf("Verify accepted sub %q as a user name", user)
		case err == nil && utf8.ValidString(s) && user != s:
			t.Fatalf("Verify returned %q for sub %q", user, s)
		}
	})
}
