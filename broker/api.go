package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mqhub/mqhub/hooks"
	"github.com/mqhub/mqhub/storage"
)

// userAPI is the JSON API of the hub's users under /v1/groups and /v1/me:
// their groups, the users they block and their settings.
type userAPI struct {
	b *Broker
	// mu serialises the read-modify-write of PATCH /v1/me/settings, so
	// that two changes to different settings of one user cannot lose one
	// another.
	mu sync.Mutex
}

// registerAPI adds the user API to mux. newHTTPHandler calls it once per
// Broker.
//
// Any user the hub admits over MQTT may call it: every request
// authenticates as a CONNECT does (hooks.Auth.Login), with HTTP Basic
// (user name and password, or an empty user name and a JWT as the
// password) or with "Authorization: Bearer <JWT>". No or wrong credentials
// get 401 with WWW-Authenticate, held like a refused CONNECT; a login
// while too many password checks are in flight from the IP or for the
// user name gets 429 unchecked. Failed logins are logged (sampled, never
// the password). The caller acts as itself; a caller whose user has the
// admin flag may also see and change every group.
//
// Endpoints (bodies are JSON of at most 64 KiB sent with Content-Type
// application/json; errors are {"error": "..."}; a group is
// {"name","title","owner","members":[...],"created"}):
//
//	GET    /v1/groups[?all=1]                   200 [group, ...]: the caller's groups; all=1 every group (admins, else 403)
//	POST   /v1/groups                           {"name","title","members"} 201 group / 400 (also unknown members) / 409
//	GET    /v1/groups/{name}                    200 group / 404
//	PATCH  /v1/groups/{name}                    {"title"} 200 group / 400 / 403 / 404
//	DELETE /v1/groups/{name}                    204 / 403 / 404
//	POST   /v1/groups/{name}/members            {"users":[...]} 200 group / 400 (also unknown users) / 403 / 404 / 409 full
//	DELETE /v1/groups/{name}/members/{user}     200 group / 403 / 404 / 409 owner
//	GET    /v1/me/blocks                        200 ["user", ...]
//	PUT    /v1/me/blocks/{user}                 204 / 400
//	DELETE /v1/me/blocks/{user}                 204 / 404
//	GET    /v1/me/settings                      200 {"hide_last_seen": bool}
//	PATCH  /v1/me/settings                      {"hide_last_seen": bool} 200 settings / 400
//
// Members must be users the hub knows (storage.Store.KnownUser: a user
// record, or a user who has connected). The caller who creates a group
// owns it and is one of its members. A
// group is visible to its members and to admins only: to anyone else it
// does not exist (404), so that group names cannot be probed. Its owner
// and admins change and delete it; a member who is not the owner gets 403
// for that, but may leave (DELETE of its own membership). The owner cannot
// leave or be removed (409): delete the group instead.
func (b *Broker) registerAPI(mux *http.ServeMux) {
	a := &userAPI{b: b}
	mux.Handle("GET /v1/groups", a.auth(a.listGroups))
	mux.Handle("POST /v1/groups", a.auth(a.createGroup))
	mux.Handle("GET /v1/groups/{name}", a.auth(a.getGroup))
	mux.Handle("PATCH /v1/groups/{name}", a.auth(a.patchGroup))
	mux.Handle("DELETE /v1/groups/{name}", a.auth(a.deleteGroup))
	mux.Handle("POST /v1/groups/{name}/members", a.auth(a.addMembers))
	mux.Handle("DELETE /v1/groups/{name}/members/{user}", a.auth(a.removeMember))
	mux.Handle("GET /v1/me/blocks", a.auth(a.listBlocks))
	mux.Handle("PUT /v1/me/blocks/{user}", a.auth(a.block))
	mux.Handle("DELETE /v1/me/blocks/{user}", a.auth(a.unblock))
	mux.Handle("GET /v1/me/settings", a.auth(a.getSettings))
	mux.Handle("PATCH /v1/me/settings", a.auth(a.patchSettings))
}

// apiHandler is a user API handler; id is the authenticated caller.
type apiHandler func(w http.ResponseWriter, r *http.Request, id hooks.Identity)

// auth authenticates the request as hooks.Auth authenticates a CONNECT
// and calls h with the caller's identity.
func (a *userAPI) auth(h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, secret, ok := credentials(r)
		if !ok {
			unauthorized(w, "authentication required")
			return
		}
		id, err := a.b.auth.Login(r.Context(), r.RemoteAddr, user, []byte(secret))
		switch {
		case errors.Is(err, hooks.ErrLoginBusy):
			tooManyLogins(w, r, a.b, user, err)
			return
		case errors.Is(err, hooks.ErrAuthUnavailable):
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		case err != nil:
			a.refuse(w, r, user, err.Error())
			return
		case id.User == "":
			// Anonymous identities are for MQTT clients only; Login does
			// not return one, but the API needs a name to act as.
			a.refuse(w, r, user, "no user name")
			return
		}
		h(w, r, id)
	})
}

// credentials returns the user name and the password or token of the
// request's Authorization header: Basic, or Bearer with a JWT (and no user
// name, which the token's subject gives).
func credentials(r *http.Request) (user, secret string, ok bool) {
	if user, secret, ok = r.BasicAuth(); ok {
		return user, secret, true
	}
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", "", false
	}
	token = strings.TrimSpace(token)
	return "", token, token != ""
}

// refuse answers a failed login and logs it (sampled). why is Login's
// error text, which never holds the password.
func (a *userAPI) refuse(w http.ResponseWriter, r *http.Request, user, why string) {
	if len(user) > storage.MaxUserNameLen {
		user = user[:storage.MaxUserNameLen] + "..."
	}
	a.b.sampled.Warn().Str("user", user).Str("remote", r.RemoteAddr).Str("method", r.Method).
		Str("path", r.URL.Path).Str("reason", why).Msg("API login refused")
	unauthorized(w, why) // Login held the refusal already
}

// apiGroup is a group as the API shows it.
type apiGroup struct {
	Name    string   `json:"name"`
	Title   string   `json:"title"`
	Owner   string   `json:"owner"`
	Members []string `json:"members"`
	Created string   `json:"created,omitempty"` // RFC 3339, UTC
}

func newAPIGroup(g storage.Group) apiGroup {
	ag := apiGroup{Name: g.Name, Title: g.Title, Owner: g.Owner, Members: g.Members}
	if ag.Members == nil {
		ag.Members = []string{}
	}
	if g.Created != 0 {
		ag.Created = time.Unix(0, g.Created).UTC().Format(time.RFC3339Nano)
	}
	return ag
}

// visible returns the group the request names if the caller may see it:
// a member or an admin. Otherwise it answers 404, the same answer as for a
// group that does not exist, and returns false.
func (a *userAPI) visible(w http.ResponseWriter, id hooks.Identity, name string) (storage.Group, bool) {
	g, ok := a.b.directory.Group(name)
	if !ok || !(id.Admin || slices.Contains(g.Members, id.User)) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no group %q", name))
		return storage.Group{}, false
	}
	return g, true
}

// manageable returns the group the request names if the caller may change
// it: its owner or an admin. A member who is not the owner gets 403,
// anyone else 404.
func (a *userAPI) manageable(w http.ResponseWriter, id hooks.Identity, name string) (storage.Group, bool) {
	g, ok := a.visible(w, id, name)
	if !ok {
		return g, false
	}
	if !id.Admin && g.Owner != id.User {
		writeError(w, http.StatusForbidden, fmt.Sprintf("only the owner of group %q (%s) or an admin may change it", name, g.Owner))
		return g, false
	}
	return g, true
}

func (a *userAPI) listGroups(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	all := false
	if v := r.URL.Query().Get("all"); v != "" {
		var err error
		if all, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("all=%q: want 1 or 0", v))
			return
		}
	}
	var names []string
	switch {
	case all && !id.Admin:
		writeError(w, http.StatusForbidden, "only admins may list every group")
		return
	case all:
		names = a.b.directory.Groups()
	default:
		names = a.b.directory.GroupsOf(id.User)
	}
	groups := make([]apiGroup, 0, len(names))
	for _, name := range names {
		if g, ok := a.b.directory.Group(name); ok { // else deleted meanwhile
			groups = append(groups, newAPIGroup(g))
		}
	}
	writeJSON(w, http.StatusOK, groups)
}

func (a *userAPI) createGroup(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	var req struct {
		Name    string   `json:"name"`
		Title   string   `json:"title"`
		Members []string `json:"members"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	// The directory adds the owner to the members.
	g, err := a.b.directory.CreateGroup(ctx, req.Name, req.Title, id.User, req.Members)
	if errors.Is(err, hooks.ErrGroupFull) {
		// Too many members from the start is a bad request, not a
		// conflict with the group's state.
		writeError(w, http.StatusBadRequest, errorText(err))
		return
	}
	if err != nil {
		a.fail(w, r, err, req.Name)
		return
	}
	a.b.log.Info().Str("user", id.User).Str("group", g.Name).Strs("members", g.Members).Msg("API: group created")
	w.Header().Set("Location", "/v1/groups/"+url.PathEscape(g.Name))
	writeJSON(w, http.StatusCreated, newAPIGroup(g))
}

func (a *userAPI) getGroup(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	if g, ok := a.visible(w, id, r.PathValue("name")); ok {
		writeJSON(w, http.StatusOK, newAPIGroup(g))
	}
}

// patchGroup sets a group's title.
func (a *userAPI) patchGroup(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	name := r.PathValue("name")
	var req struct {
		Title *string `json:"title"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Title == nil {
		writeError(w, http.StatusBadRequest, `"title" is required`)
		return
	}
	if _, ok := a.manageable(w, id, name); !ok {
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	g, err := a.b.directory.RenameGroup(ctx, name, *req.Title)
	if err != nil {
		a.fail(w, r, err, name)
		return
	}
	a.b.log.Info().Str("user", id.User).Str("group", name).Str("title", g.Title).Msg("API: group renamed")
	writeJSON(w, http.StatusOK, newAPIGroup(g))
}

func (a *userAPI) deleteGroup(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	name := r.PathValue("name")
	if _, ok := a.manageable(w, id, name); !ok {
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	if err := a.b.directory.DeleteGroup(ctx, name); err != nil {
		a.fail(w, r, err, name)
		return
	}
	a.b.log.Info().Str("user", id.User).Str("group", name).Msg("API: group deleted")
	w.WriteHeader(http.StatusNoContent)
}

func (a *userAPI) addMembers(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	name := r.PathValue("name")
	var req struct {
		Users []string `json:"users"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Users) == 0 {
		writeError(w, http.StatusBadRequest, `"users" must name at least one user`)
		return
	}
	if _, ok := a.manageable(w, id, name); !ok {
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	g, err := a.b.directory.AddMembers(ctx, name, req.Users)
	if err != nil {
		a.fail(w, r, err, name)
		return
	}
	a.b.log.Info().Str("user", id.User).Str("group", name).Strs("added", req.Users).Int("members", len(g.Members)).
		Msg("API: group members added")
	writeJSON(w, http.StatusOK, newAPIGroup(g))
}

// removeMember removes one member: the owner or an admin may remove
// anyone but the owner, any member may remove itself (leave).
func (a *userAPI) removeMember(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	name, user := r.PathValue("name"), r.PathValue("user")
	g, ok := a.visible(w, id, name)
	if !ok {
		return
	}
	if user != id.User && !id.Admin && g.Owner != id.User {
		writeError(w, http.StatusForbidden, fmt.Sprintf("only the owner of group %q (%s) or an admin may remove other members", name, g.Owner))
		return
	}
	if !slices.Contains(g.Members, user) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is not a member of group %q", user, name))
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	g, err := a.b.directory.RemoveMembers(ctx, name, []string{user})
	if err != nil {
		a.fail(w, r, err, name)
		return
	}
	msg := "API: group member removed"
	if user == id.User {
		msg = "API: group left"
	}
	a.b.log.Info().Str("user", id.User).Str("group", name).Str("removed", user).Int("members", len(g.Members)).Msg(msg)
	writeJSON(w, http.StatusOK, newAPIGroup(g))
}

func (a *userAPI) listBlocks(w http.ResponseWriter, _ *http.Request, id hooks.Identity) {
	blocked := a.b.directory.BlockedBy(id.User)
	if blocked == nil {
		blocked = []string{}
	}
	writeJSON(w, http.StatusOK, blocked)
}

// block stops messages from another user to the caller. Blocking a user
// already blocked succeeds: PUT is idempotent.
func (a *userAPI) block(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	user := r.PathValue("user")
	ctx, cancel := adminContext(r)
	defer cancel()
	if err := a.b.directory.Block(ctx, id.User, user); err != nil && !errors.Is(err, storage.ErrExists) {
		a.fail(w, r, err, "")
		return
	}
	a.b.log.Info().Str("user", id.User).Str("blocked", user).Msg("API: user blocked")
	w.WriteHeader(http.StatusNoContent)
}

func (a *userAPI) unblock(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	user := r.PathValue("user")
	ctx, cancel := adminContext(r)
	defer cancel()
	err := a.b.directory.Unblock(ctx, id.User, user)
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%q is not blocked", user))
		return
	}
	if err != nil {
		a.fail(w, r, err, "")
		return
	}
	a.b.log.Info().Str("user", id.User).Str("unblocked", user).Msg("API: user unblocked")
	w.WriteHeader(http.StatusNoContent)
}

// apiSettings are a user's settings as the API shows them.
type apiSettings struct {
	HideLastSeen bool `json:"hide_last_seen"`
}

func (a *userAPI) getSettings(w http.ResponseWriter, _ *http.Request, id hooks.Identity) {
	writeJSON(w, http.StatusOK, apiSettings{HideLastSeen: a.b.directory.Settings(id.User).HideLastSeen})
}

// patchSettings changes the settings the body names and keeps the others.
func (a *userAPI) patchSettings(w http.ResponseWriter, r *http.Request, id hooks.Identity) {
	var req struct {
		HideLastSeen *bool `json:"hide_last_seen"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.HideLastSeen == nil {
		writeError(w, http.StatusBadRequest, `no setting given (known: "hide_last_seen")`)
		return
	}
	ctx, cancel := adminContext(r)
	defer cancel()
	a.mu.Lock()
	st := a.b.directory.Settings(id.User)
	st.HideLastSeen = *req.HideLastSeen
	err := a.b.directory.SetSettings(ctx, id.User, st)
	a.mu.Unlock()
	if err != nil {
		a.fail(w, r, err, "")
		return
	}
	a.b.log.Info().Str("user", id.User).Bool("hide_last_seen", st.HideLastSeen).Msg("API: settings changed")
	writeJSON(w, http.StatusOK, apiSettings{HideLastSeen: st.HideLastSeen})
}

// fail answers a failed directory call with the status its error means;
// group names the group the call was about, for the messages of 404 and
// 409.
func (a *userAPI) fail(w http.ResponseWriter, r *http.Request, err error, group string) {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no group %q", group))
	case errors.Is(err, storage.ErrExists):
		writeError(w, http.StatusConflict, fmt.Sprintf("group %q already exists", group))
	case errors.Is(err, storage.ErrInvalid), errors.Is(err, hooks.ErrUnknownUser):
		writeError(w, http.StatusBadRequest, errorText(err))
	case errors.Is(err, hooks.ErrGroupFull), errors.Is(err, hooks.ErrOwner):
		writeError(w, http.StatusConflict, errorText(err))
	case errors.Is(err, storage.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "the hub is shutting down")
	case errors.Is(err, context.DeadlineExceeded):
		// Another change to the same group or user, or the disk, held
		// this one past adminTimeout.
		a.b.log.Warn().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("API: change timed out")
		writeError(w, http.StatusServiceUnavailable, "the change timed out; try again")
	default:
		a.b.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("API: store failed")
		writeError(w, http.StatusInternalServerError, "store failed (see the hub's log)")
	}
}

// errorText is an error's message for the person calling the API: without
// the storage package's prefixes ("storage: invalid argument: "), which
// the status already says.
func errorText(err error) string {
	msg := strings.ReplaceAll(err.Error(), storage.ErrInvalid.Error()+": ", "")
	return strings.ReplaceAll(msg, "storage: ", "")
}
