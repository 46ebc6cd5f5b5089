package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/storage"
)

// maxAdminBody bounds the request body of the admin API.
const maxAdminBody = 64 << 10

// adminTimeout bounds the store writes of one admin request. They do not
// follow the request's context: an admin whose connection drops must not
// leave a change half made (a user deleted but still connected).
const adminTimeout = 10 * time.Second

// Label values of mqhub_admin_auth_failures_total.
const (
	adminFailCredentials = "bad_credentials" // unknown user or wrong password
	adminFailNotAdmin    = "not_admin"       // right password, no admin flag
	adminFailBusy        = "busy"            // refused unchecked: too many logins in flight (429)
)

// adminAPI is the JSON user management API under /v1/admin/.
type adminAPI struct {
	b        *Broker
	failures *prometheus.CounterVec
	// mu serialises the API's changes to user records, so that a password
	// change cannot bring back a user deleted meanwhile and two changes to
	// one user cannot lose one another. Nothing else writes users while
	// the hub runs (the CLI cannot open the store).
	mu sync.Mutex
}

// registerAdminAPI adds the admin API to mux and its counter to the
// node's metrics registry. newHTTPHandler calls it once per Broker.
//
// The API manages the user store while the hub runs (the `mqhub user`
// commands cannot open the store then). Every request authenticates with
// HTTP Basic as a user of the store whose admin flag is set: no or wrong
// credentials get 401 with WWW-Authenticate, a user without the flag 403,
// a login over the bounds on password checks in flight 429 (hooks.Auth).
// Failed logins are logged (sampled, never the password) and counted in
// mqhub_admin_auth_failures_total{reason}. The first admin is therefore
// made offline, while the hub is stopped:
//
//	mqhub user add root --admin
//
// Endpoints (bodies are JSON of at most 64 KiB sent with Content-Type
// application/json; errors are {"error": "..."}):
//
//	GET    /v1/admin/users                     200 [{"name","admin","created"}]
//	POST   /v1/admin/users                     {"name","password","admin"} 201 / 400 / 409
//	PUT    /v1/admin/users/{name}/password     {"password"} 204 / 400 / 404
//	PATCH  /v1/admin/users/{name}              {"admin": bool} 204 / 400 / 404
//	DELETE /v1/admin/users/{name}              204 / 404
//	GET    /v1/admin/users/{name}/client-ids   200 ["id", ...] / 404
//
// A password change keeps the user's sessions: clients already connected
// stay connected, the new password applies from their next CONNECT.
// Deleting a user releases its client IDs and disconnects every client
// connected as that user (MQTT 5: DISCONNECT 0x87 not authorized; 3.1.1:
// the connection is closed), however it authenticated. Taking the admin
// flag away does the same, so that no connection keeps admin rights;
// granting it applies from the next CONNECT. A CONNECT authenticated just
// before a deletion but not yet registered with the server when the
// deletion disconnects clients can survive it; deleting the user again
// ends it.
func (b *Broker) registerAdminAPI(mux *http.ServeMux) {
	a := &adminAPI{
		b: b,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mqhub_admin_auth_failures_total",
			Help: "Refused logins to the HTTP admin API, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{adminFailCredentials, adminFailNotAdmin, adminFailBusy} {
		a.failures.WithLabelValues(r) // export zeros so dashboards see the series
	}
	b.metrics.registry.MustRegister(a.failures)

	mux.Handle("GET /v1/admin/users", a.auth(a.listUsers))
	mux.Handle("POST /v1/admin/users", a.auth(a.createUser))
	mux.Handle("PUT /v1/admin/users/{name}/password", a.auth(a.setPassword))
	mux.Handle("PATCH /v1/admin/users/{name}", a.auth(a.patchUser))
	mux.Handle("DELETE /v1/admin/users/{name}", a.auth(a.deleteUser))
	mux.Handle("GET /v1/admin/users/{name}/client-ids", a.auth(a.listClientIDs))
}

// adminHandler is an admin API handler; admin is the authenticated user.
type adminHandler func(w http.ResponseWriter, r *http.Request, admin string)

// auth checks the request's HTTP Basic credentials against the user store
// and calls h for an admin.
func (a *adminAPI) auth(h adminHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pw, ok := r.BasicAuth()
		if !ok {
			unauthorized(w, "authentication required")
			return
		}
		// As a CONNECT: the same failure delay and bounds on checks in
		// flight (hooks.Auth), so guessing gains nothing over HTTP.
		id, err := a.b.auth.PasswordLogin(r.Context(), r.RemoteAddr, name, []byte(pw))
		switch {
		case errors.Is(err, hooks.ErrLoginBusy):
			a.failures.WithLabelValues(adminFailBusy).Inc()
			tooManyLogins(w, r, a.b, name, err)
			return
		case errors.Is(err, hooks.ErrAuthUnavailable):
			a.b.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin API: login not checked")
			writeError(w, http.StatusServiceUnavailable, "user store unavailable")
			return
		case err != nil:
			a.refuse(w, r, name, adminFailCredentials)
			return
		case !id.Admin:
			a.refuse(w, r, name, adminFailNotAdmin)
			return
		}
		h(w, r, id.User)
	})
}

// refuse answers a failed login, logs it (sampled) and counts it.
func (a *adminAPI) refuse(w http.ResponseWriter, r *http.Request, user, reason string) {
	a.failures.WithLabelValues(reason).Inc()
	if len(user) > storage.MaxUserNameLen {
		user = user[:storage.MaxUserNameLen] + "..."
	}
	a.b.sampled.Warn().Str("user", user).Str("remote", r.RemoteAddr).Str("method", r.Method).
		Str("path", r.URL.Path).Str("reason", reason).Msg("admin API login refused")
	if reason == adminFailNotAdmin {
		writeError(w, http.StatusForbidden, "user is not an admin")
		return
	}
	unauthorized(w, "unknown user or wrong password")
}

// tooManyLogins answers a login refused before its password was checked,
// as too many were in flight from the client's IP or for the user name:
// 429 with Retry-After. Logged sampled: a guesser sends them by the
// dozen.
func tooManyLogins(w http.ResponseWriter, r *http.Request, b *Broker, user string, err error) {
	if len(user) > storage.MaxUserNameLen {
		user = user[:storage.MaxUserNameLen] + "..."
	}
	b.sampled.Warn().Str("user", user).Str("remote", r.RemoteAddr).Str("method", r.Method).
		Str("path", r.URL.Path).Str("reason", err.Error()).Msg("API login refused")
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, "too many logins in progress from your address or for this user; retry later")
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="mqhub"`)
	writeError(w, http.StatusUnauthorized, msg)
}

// adminUser is a user as the API shows it: never the password hash.
type adminUser struct {
	Name    string `json:"name"`
	Admin   bool   `json:"admin"`
	Created string `json:"created,omitempty"` // RFC 3339, UTC
}

func newAdminUser(u *storage.User) adminUser {
	au := adminUser{Name: u.Name, Admin: u.Admin}
	if u.Created != 0 {
		au.Created = time.Unix(0, u.Created).UTC().Format(time.RFC3339Nano)
	}
	return au
}

func (a *adminAPI) listUsers(w http.ResponseWriter, r *http.Request, _ string) {
	users := []adminUser{}
	if err := a.b.store.ListUsers(func(u *storage.User) error {
		users = append(users, newAdminUser(u))
		return nil
	}); err != nil {
		a.storeError(w, r, err, "")
		return
	}
	writeJSON(w, http.StatusOK, users)
}

func (a *adminAPI) createUser(w http.ResponseWriter, r *http.Request, admin string) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if err := storage.CheckUserName(req.Name); err != nil {
		a.storeError(w, r, err, req.Name)
		return
	}
	// Pay for the hash only for a new user (CreateUser checks again).
	if _, err := a.b.store.GetUser(req.Name); err == nil {
		a.storeError(w, r, fmt.Errorf("%w: user %q", storage.ErrExists, req.Name), req.Name)
		return
	}
	hash, err := storage.HashPassword([]byte(req.Password))
	if err != nil {
		a.storeError(w, r, err, req.Name)
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	a.mu.Lock()
	err = a.b.store.CreateUser(ctx, &storage.User{Name: req.Name, PasswordHash: hash, Admin: req.Admin})
	var created *storage.User
	if err == nil {
		created, _ = a.b.store.GetUser(req.Name) // for the creation time the store set
	}
	a.mu.Unlock()
	if err != nil {
		a.storeError(w, r, err, req.Name)
		return
	}
	a.b.log.Info().Str("admin", admin).Str("user", req.Name).Bool("is_admin", req.Admin).Msg("admin API: user created")
	if created == nil {
		created = &storage.User{Name: req.Name, Admin: req.Admin}
	}
	w.Header().Set("Location", "/v1/admin/users/"+url.PathEscape(req.Name))
	writeJSON(w, http.StatusCreated, newAdminUser(created))
}

// setPassword replaces a user's password. Sessions are kept: connected
// clients stay connected.
func (a *adminAPI) setPassword(w http.ResponseWriter, r *http.Request, admin string) {
	name := r.PathValue("name")
	var req struct {
		Password string `json:"password"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	// Pay for the hash only for a user that exists (checked again below).
	if _, err := a.b.store.GetUser(name); err != nil {
		a.storeError(w, r, err, name)
		return
	}
	hash, err := storage.HashPassword([]byte(req.Password))
	if err != nil {
		a.storeError(w, r, err, name)
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	a.mu.Lock()
	u, err := a.b.store.GetUser(name)
	if err == nil {
		u.PasswordHash = hash
		err = a.b.store.PutUser(ctx, u)
	}
	a.mu.Unlock()
	if err != nil {
		a.storeError(w, r, err, name)
		return
	}
	a.b.log.Info().Str("admin", admin).Str("user", name).Msg("admin API: password changed")
	w.WriteHeader(http.StatusNoContent)
}

// patchUser sets or clears the admin flag. Clearing it disconnects the
// user's clients, whose connections were admitted as an admin's.
func (a *adminAPI) patchUser(w http.ResponseWriter, r *http.Request, admin string) {
	name := r.PathValue("name")
	var req struct {
		Admin *bool `json:"admin"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Admin == nil {
		writeError(w, http.StatusBadRequest, `"admin" (true or false) is required`)
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	a.mu.Lock()
	u, err := a.b.store.GetUser(name)
	demoted := false
	if err == nil && u.Admin != *req.Admin {
		demoted = u.Admin
		u.Admin = *req.Admin
		err = a.b.store.PutUser(ctx, u)
	}
	a.mu.Unlock()
	if err != nil {
		a.storeError(w, r, err, name)
		return
	}
	a.b.auth.ForgetUser(name) // offline sessions' access follows the new flag
	ev := a.b.log.Info().Str("admin", admin).Str("user", name).Bool("is_admin", *req.Admin)
	if demoted {
		ev = ev.Int("disconnected", a.b.disconnectUser(name))
	}
	ev.Msg("admin API: admin flag set")
	w.WriteHeader(http.StatusNoContent)
}

// deleteUser deletes a user, releases its client IDs and disconnects its
// clients.
func (a *adminAPI) deleteUser(w http.ResponseWriter, r *http.Request, admin string) {
	name := r.PathValue("name")
	ctx, cancel := adminContext(r)
	defer cancel()
	a.mu.Lock()
	err := a.b.store.DeleteUser(ctx, name)
	a.mu.Unlock()
	if err != nil {
		a.storeError(w, r, err, name)
		return
	}
	a.b.auth.ForgetUser(name)
	n := a.b.disconnectUser(name)
	a.b.log.Info().Str("admin", admin).Str("user", name).Int("disconnected", n).Msg("admin API: user deleted")
	w.WriteHeader(http.StatusNoContent)
}

// listClientIDs lists the client IDs a user owns. Users known only from
// JWTs or client certificates own client IDs too, so the list is given
// whenever it is not empty; an empty list for a name the store does not
// know is 404.
func (a *adminAPI) listClientIDs(w http.ResponseWriter, r *http.Request, _ string) {
	name := r.PathValue("name")
	ids := []string{}
	if err := a.b.store.ListClientIDs(name, func(id string) error {
		ids = append(ids, id)
		return nil
	}); err != nil {
		a.storeError(w, r, err, name)
		return
	}
	if len(ids) == 0 {
		if _, err := a.b.store.GetUser(name); err != nil {
			a.storeError(w, r, err, name)
			return
		}
	}
	writeJSON(w, http.StatusOK, ids)
}

// disconnectUser ends the connection of every client connected as user
// and returns how many it ended: MQTT 5 clients get DISCONNECT 0x87 (not
// authorized), 3.1.1 clients, which have no server DISCONNECT, are closed.
func (b *Broker) disconnectUser(user string) int {
	n := 0
	for _, cl := range b.mochi.Clients.GetAll() {
		if cl.Net.Inline || cl.Closed() || string(cl.Properties.Username) != user {
			continue
		}
		if cl.Properties.ProtocolVersion == 5 {
			_ = b.mochi.DisconnectClient(cl, packets.ErrNotAuthorized)
		} else {
			cl.Stop(packets.ErrNotAuthorized)
		}
		n++
	}
	return n
}

// storeError answers a failed store call with the status its error means.
func (a *adminAPI) storeError(w http.ResponseWriter, r *http.Request, err error, user string) {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", user))
	case errors.Is(err, storage.ErrExists):
		writeError(w, http.StatusConflict, fmt.Sprintf("user %q already exists", user))
	case errors.Is(err, storage.ErrInvalid):
		// The validation message, without the package prefix.
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), storage.ErrInvalid.Error()+": "))
	case errors.Is(err, storage.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the hub is shutting down")
	default:
		a.b.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin API: store failed")
		writeError(w, http.StatusInternalServerError, "user store failed (see the hub's log)")
	}
}

// adminContext bounds the store writes of r without ending them when the
// client goes away.
func adminContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), adminTimeout)
}

// decodeBody decodes the JSON request body into v, refusing other content
// types (which also keeps cross-site form posts out), unknown fields,
// trailing data and bodies over maxAdminBody. It answers the request and
// returns false on failure.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(&struct{}{}) != io.EOF {
			err = errors.New("data after the JSON value")
		}
	}
	if err == nil {
		return true
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxAdminBody))
		return false
	}
	writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
	return false
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
