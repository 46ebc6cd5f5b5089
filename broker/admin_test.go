package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqhub/mqhub/internal/testutil"
	"github.com/mqhub/mqhub/storage"
)

// adminResponse is one answer of the admin API.
type adminResponse struct {
	status int
	header http.Header
	body   []byte
}

// errorMessage is the "error" field of a JSON error body.
func (r adminResponse) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("status %d: body %q is not a JSON error (%v)", r.status, r.body, err)
	}
	return e.Error
}

// adminCall sends one request to the admin API as user (no credentials if
// user is ""). A string body is sent as is, anything else as JSON; a body
// goes with Content-Type application/json.
func adminCall(t *testing.T, h *secureHub, method, path, user, password string, body any) adminResponse {
	t.Helper()
	authorization := ""
	if user != "" {
		authorization = apiBasic(user, password)
	}
	return apiCall(t, h, method, path, authorization, body)
}

// asRoot calls the admin API as the admin of startSecureHub.
func asRoot(t *testing.T, h *secureHub, method, path string, body any) adminResponse {
	t.Helper()
	return adminCall(t, h, method, path, "root", "root-pw", body)
}

func wantStatus(t *testing.T, r adminResponse, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (body %q), want %d", r.status, r.body, status)
	}
}

func TestAdminAPIAuthentication(t *testing.T) {
	h := startSecureHub(t, testACL)
	for _, tc := range []struct {
		name, user, password string
		status               int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "root", "nope", http.StatusUnauthorized},
		{"unknown user", "mallory", "root-pw", http.StatusUnauthorized},
		{"invalid user name", "ro#ot", "root-pw", http.StatusUnauthorized},
		{"not an admin", "alice", "alice-pw", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := adminCall(t, h, http.MethodGet, "/v1/admin/users", tc.user, tc.password, nil)
			wantStatus(t, r, tc.status)
			r.errorMessage(t)
			if got := r.header.Get("WWW-Authenticate"); tc.status == http.StatusUnauthorized && got != `Basic realm="mqhub"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
			// Refused before anything is done.
			r = adminCall(t, h, http.MethodDelete, "/v1/admin/users/bob", tc.user, tc.password, nil)
			wantStatus(t, r, tc.status)
		})
	}
	if _, err := h.Store().GetUser("bob"); err != nil {
		t.Fatalf("bob after refused deletes: %v", err)
	}
	// Missing credentials are not a failed login; every other refusal is.
	for series, want := range map[string]string{
		`mqhub_admin_auth_failures_total{reason="bad_credentials"}`: "6",
		`mqhub_admin_auth_failures_total{reason="not_admin"}`:       "2",
	} {
		if got := metric(t, h.Broker, series); got != want {
			t.Errorf("%s = %q, want %s", series, got, want)
		}
	}
	wantStatus(t, asRoot(t, h, http.MethodGet, "/v1/admin/users", nil), http.StatusOK)
}

func TestAdminAPICreateAndList(t *testing.T) {
	h := startSecureHub(t, testACL)

	r := asRoot(t, h, http.MethodPost, "/v1/admin/users", map[string]any{"name": "carol", "password": "carol-pw"})
	wantStatus(t, r, http.StatusCreated)
	if loc := r.header.Get("Location"); loc != "/v1/admin/users/carol" {
		t.Errorf("Location %q", loc)
	}
	var created map[string]any
	if err := json.Unmarshal(r.body, &created); err != nil || created["name"] != "carol" || created["admin"] != false || created["created"] == nil {
		t.Errorf("created user %s (%v)", r.body, err)
	}
	u, err := h.Store().GetUser("carol")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost(u.PasswordHash); err != nil || cost < 10 {
		t.Errorf("stored hash cost %d (%v): the API must hash with storage.HashPassword", cost, err)
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		msg    string // part of the error message
	}{
		{"duplicate", map[string]any{"name": "carol", "password": "other"}, http.StatusConflict, "already exists"},
		{"wildcard in name", map[string]any{"name": "ca#rol", "password": "pw"}, http.StatusBadRequest, `contains '#'`},
		{"slash in name", map[string]any{"name": "a/b", "password": "pw"}, http.StatusBadRequest, `contains '/'`},
		{"empty name", map[string]any{"password": "pw"}, http.StatusBadRequest, "empty user name"},
		{"empty password", map[string]any{"name": "dave"}, http.StatusBadRequest, "empty password"},
		{"password over 72 bytes", map[string]any{"name": "dave", "password": strings.Repeat("x", 73)}, http.StatusBadRequest, "longer than 72 bytes"},
		{"unknown field", map[string]any{"name": "dave", "password": "pw", "passwrd": "x"}, http.StatusBadRequest, "unknown field"},
		{"not JSON", "name=dave", http.StatusBadRequest, "invalid JSON"},
		{"two values", `{"name":"dave","password":"pw"} {}`, http.StatusBadRequest, "after the JSON value"},
		{"body over 64 KiB", `{"name":"dave","password":"` + strings.Repeat("x", 64<<10) + `"}`, http.StatusRequestEntityTooLarge, "over 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := asRoot(t, h, http.MethodPost, "/v1/admin/users", tc.body)
			wantStatus(t, r, tc.status)
			msg := r.errorMessage(t)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q, want it to hold %q", msg, tc.msg)
			}
			if strings.Contains(msg, "storage:") {
				t.Errorf("error %q shows the package prefix", msg)
			}
		})
	}
	t.Run("form content type", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.HTTPAddr()+"/v1/admin/users", strings.NewReader(`{"name":"dave","password":"pw"}`))
		req.Header.Set("Content-Type", "text/plain")
		req.SetBasicAuth("root", "root-pw")
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d, want 415", resp.StatusCode)
		}
	})
	if _, err := h.Store().GetUser("dave"); err == nil {
		t.Fatal("a refused request created dave")
	}

	r = asRoot(t, h, http.MethodGet, "/v1/admin/users", nil)
	wantStatus(t, r, http.StatusOK)
	if bytes.Contains(r.body, []byte("$2a$")) || bytes.Contains(bytes.ToLower(r.body), []byte("hash")) || bytes.Contains(r.body, []byte("password")) {
		t.Fatalf("user list shows password hashes: %s", r.body)
	}
	var list []map[string]any
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range list {
		if len(u) != 3 || u["created"] == nil {
			t.Errorf("user entry %v: want exactly name, admin, created", u)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(u["created"])); err != nil {
			t.Errorf("created: %v", err)
		}
		names = append(names, fmt.Sprint(u["name"]))
		if want := u["name"] == "root"; u["admin"] != want {
			t.Errorf("user %v: admin flag", u)
		}
	}
	if want := []string{"alice", "bob", "carol", "root"}; !slices.Equal(names, want) {
		t.Errorf("users %v, want %v", names, want)
	}

	// The new user can log in over MQTT.
	h.mustLogin(t, "carol", "carol-phone")
}

func TestAdminAPIPasswordChangeKeepsSessions(t *testing.T) {
	h := startSecureHub(t, testACL)
	alice := h.mustLogin(t, "alice", "alice-phone")

	r := asRoot(t, h, http.MethodPut, "/v1/admin/users/alice/password", map[string]string{"password": "new-secret"})
	wantStatus(t, r, http.StatusNoContent)

	_, ack, err := h.login(t, "alice", "alice-pw", "alice-laptop")
	expectRefused(t, ack, err, 0x86)
	if _, _, err := h.login(t, "alice", "new-secret", "alice-laptop"); err != nil {
		t.Fatalf("new password refused: %v", err)
	}
	// The connection made with the old password is still there.
	alice.Subscribe(t, "u/alice/inbox", 1)
	sender := h.mustLogin(t, "root", "sender")
	sender.Publish(t, &paho.Publish{Topic: "u/alice/inbox", QoS: 1, Payload: []byte("still here")})
	if m := alice.Next(t, 5*time.Second); string(m.Payload) != "still here" {
		t.Fatalf("alice got %q", m.Payload)
	}
	if u, err := h.Store().GetUser("alice"); err != nil || u.Admin || u.Created == 0 {
		t.Fatalf("alice after the change: %+v, %v", u, err)
	}

	wantStatus(t, asRoot(t, h, http.MethodPut, "/v1/admin/users/nobody/password", map[string]string{"password": "x"}), http.StatusNotFound)
	r = asRoot(t, h, http.MethodPut, "/v1/admin/users/alice/password", map[string]string{"password": ""})
	wantStatus(t, r, http.StatusBadRequest)
	if msg := r.errorMessage(t); msg != "empty password" {
		t.Errorf("error %q", msg)
	}
}

func TestAdminAPIAdminFlag(t *testing.T) {
	h := startSecureHub(t, testACL)
	// A name that needs escaping in the path.
	hash, err := bcrypt.GenerateFromPassword([]byte("ed-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Store().PutUser(context.Background(), &storage.User{Name: "ed wood", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, asRoot(t, h, http.MethodPatch, "/v1/admin/users/ed%20wood", map[string]bool{"admin": true}), http.StatusNoContent)
	if u, _ := h.Store().GetUser("ed wood"); u == nil || !u.Admin {
		t.Fatalf("ed wood after promotion: %+v", u)
	}
	// Ed may now use the API himself.
	wantStatus(t, adminCall(t, h, http.MethodGet, "/v1/admin/users", "ed wood", "ed-pw", nil), http.StatusOK)

	// Bob, promoted, may subscribe to $SYS from his next connection on.
	wantStatus(t, asRoot(t, h, http.MethodPatch, "/v1/admin/users/bob", map[string]bool{"admin": true}), http.StatusNoContent)
	bob := h.mustLogin(t, "bob", "bob-phone")
	bob.Subscribe(t, "$SYS/broker/uptime", 0)

	// Demoted, his connection ends and the next one is an ordinary user's.
	wantStatus(t, asRoot(t, h, http.MethodPatch, "/v1/admin/users/bob", map[string]bool{"admin": false}), http.StatusNoContent)
	expectServerDisconnect(t, bob, 0x87)
	bob = h.mustLogin(t, "bob", "bob-phone")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, _ := bob.Client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$SYS/broker/uptime"}}})
	if ack == nil || len(ack.Reasons) != 1 || ack.Reasons[0] != 0x87 {
		t.Fatalf("demoted bob's $SYS subscription: %+v", ack)
	}
	// Setting the flag it already has changes nothing and ends nothing.
	wantStatus(t, asRoot(t, h, http.MethodPatch, "/v1/admin/users/bob", map[string]bool{"admin": false}), http.StatusNoContent)
	bob.Subscribe(t, "news/today", 0)

	wantStatus(t, asRoot(t, h, http.MethodPatch, "/v1/admin/users/nobody", map[string]bool{"admin": true}), http.StatusNotFound)
	r := asRoot(t, h, http.MethodPatch, "/v1/admin/users/bob", map[string]any{})
	wantStatus(t, r, http.StatusBadRequest)
	r.errorMessage(t)
}

func TestAdminAPIDeleteUser(t *testing.T) {
	h := startSecureHub(t, testACL)
	alice := h.mustLogin(t, "alice", "alice-phone")
	old := connectV311(t, h.MQTTAddr(), "alice-old", "alice", "alice-pw")
	bob := h.mustLogin(t, "bob", "bob-phone")

	r := asRoot(t, h, http.MethodGet, "/v1/admin/users/alice/client-ids", nil)
	wantStatus(t, r, http.StatusOK)
	var ids []string
	if err := json.Unmarshal(r.body, &ids); err != nil || !slices.Equal(ids, []string{"alice-old", "alice-phone"}) {
		t.Fatalf("alice's client IDs %s (%v)", r.body, err)
	}
	wantStatus(t, asRoot(t, h, http.MethodGet, "/v1/admin/users/nobody/client-ids", nil), http.StatusNotFound)
	wantStatus(t, asRoot(t, h, http.MethodGet, "/v1/admin/users/no%23body/client-ids", nil), http.StatusBadRequest)

	wantStatus(t, asRoot(t, h, http.MethodDelete, "/v1/admin/users/alice", nil), http.StatusNoContent)
	expectServerDisconnect(t, alice, 0x87)
	waitClosed(t, old, 5*time.Second)
	// Bob is not alice.
	bob.Subscribe(t, "news/today", 0)

	_, ack, err := h.login(t, "alice", "alice-pw", "alice-phone")
	expectRefused(t, ack, err, 0x86)
	if _, err := h.Store().GetUser("alice"); err == nil {
		t.Fatal("alice still in the store")
	}
	wantStatus(t, asRoot(t, h, http.MethodDelete, "/v1/admin/users/alice", nil), http.StatusNotFound)
	wantStatus(t, asRoot(t, h, http.MethodDelete, "/v1/admin/users/a%2Fb", nil), http.StatusBadRequest)

	// Alice's client IDs are free for another user.
	h.mustLogin(t, "bob", "alice-phone")
	r = asRoot(t, h, http.MethodGet, "/v1/admin/users/bob/client-ids", nil)
	if err := json.Unmarshal(r.body, &ids); err != nil || !slices.Equal(ids, []string{"alice-phone", "bob-phone"}) {
		t.Fatalf("bob's client IDs %s (%v)", r.body, err)
	}
	wantStatus(t, asRoot(t, h, http.MethodGet, "/v1/admin/users/alice/client-ids", nil), http.StatusNotFound)
}

// expectServerDisconnect waits for the hub to send c a DISCONNECT with the
// reason code, then for the connection to end.
func expectServerDisconnect(t *testing.T, c *testutil.Client, code byte) {
	t.Helper()
	select {
	case d := <-c.Disconnects:
		if d.ReasonCode != code {
			t.Fatalf("DISCONNECT reason 0x%02x, want 0x%02x", d.ReasonCode, code)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no DISCONNECT within 5s")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("connection still open after the DISCONNECT")
	}
}

// connectV311 connects with MQTT 3.1.1 (paho.golang speaks only 5), user
// name and password, clean session, and fails the test unless admitted.
func connectV311(t *testing.T, addr, clientID, user, password string) net.Conn {
	t.Helper()
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60}, str(clientID)...)
	body = append(append(body, str(user)...), str(password)...)
	conn := testutil.Dial(t, addr)
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("connack %x, %v", ack, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}
