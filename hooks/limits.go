package hooks

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/mqhub/mqhub/hooks/offline"
	"github.com/mqhub/mqhub/storage"
)

// SessionReader finds the stored record of a persistent session.
type SessionReader interface {
	GetSession(clientID string) (*storage.Session, error)
}

// LimitsOptions configures Limits. A zero limit is no limit.
type LimitsOptions struct {
	Server *mqtt.Server // used to send refusing CONNACKs and DISCONNECTs
	// MaxConnectionsPerIP bounds the network connections open at once from
	// one IP, counted from accept (Accept, Release).
	MaxConnectionsPerIP int
	// ConnectRate is the connections per second one IP may open, as a
	// token bucket holding twice that (at least 1).
	ConnectRate float64
	// PublishRate and PublishBytesRate are the PUBLISH packets and payload
	// bytes per second of one connection, token buckets of twice that.
	PublishRate      float64
	PublishBytesRate int64
	// UserPublishRate is the PUBLISH packets per second of one user across
	// all its connections, a token bucket holding UserPublishBurst (at
	// least 1): one user cannot fill other users' queues, whatever number
	// of connections it opens. Anonymous clients and users for whom
	// Exempt answers true (admins) are not counted.
	UserPublishRate  float64
	UserPublishBurst int
	Exempt           func(user string) bool
	// MaxSubscriptions bounds the subscriptions one session holds;
	// MaxTopicLength (bytes) and MaxTopicLevels bound topic names and
	// filters.
	MaxSubscriptions, MaxTopicLength, MaxTopicLevels int
	// Sessions, when set, holds the subscriptions of a resumed persistent
	// session that mochi no longer lists on the client (the offline hook
	// keeps them): they count towards MaxSubscriptions.
	Sessions SessionReader
	Logger   zerolog.Logger
}

// LimitsStats counts refusals, one counter per limit.
type LimitsStats struct {
	ConnectionsPerIP atomic.Int64 // connections refused at accept: too many open from the IP
	ConnectRate      atomic.Int64 // connections refused at accept: the IP connects too often
	PublishRate      atomic.Int64 // PUBLISHes refused: too many messages
	PublishBytesRate atomic.Int64 // PUBLISHes refused: too many payload bytes
	UserPublishRate  atomic.Int64 // PUBLISHes refused or dropped (QoS 0): too many messages from the user
	SessionsPerUser  atomic.Int64 // CONNECTs refused: the user holds the most persistent sessions allowed (UserSessions)
	Subscriptions    atomic.Int64 // topic filters refused: too many subscriptions
	TopicLength      atomic.Int64 // topic names and filters (will topics too) refused: too long
	TopicLevels      atomic.Int64 // topic names and filters (will topics too) refused: too many levels
}

// Limits is the hook that keeps one client or one IP from taking more than
// its share:
//
//   - connections open per IP and new connections per second per IP,
//     checked at accept, before a byte is read (Accept, Release): a
//     refused socket is closed at once, so that a flood of connections
//     costs neither memory nor a CONNECT decode;
//   - PUBLISH packets and payload bytes per second per connection: an MQTT 5
//     QoS 1/2 message is answered PUBACK/PUBREC 0x96 message rate too high
//     and dropped, a QoS 0 one ends the connection with DISCONNECT 0x96; a
//     3.1.1 client, which has no reason codes, is disconnected;
//   - PUBLISH packets per second per user, over all its connections: QoS
//     1/2 as above, but a QoS 0 message is only dropped (and counted): the
//     bucket is shared, so one device's flood must not cut off another
//     device of the same user that sends a typing indicator;
//   - subscriptions per session: each filter past the limit gets SUBACK
//     0x97 quota exceeded (3.1.1: 0x80);
//   - topic length and levels: a PUBLISH is refused like a rate (0x90 topic
//     name invalid), a filter gets SUBACK 0x8F topic filter invalid, a will
//     topic refuses the CONNECT (0x90).
//
// It must come before the auth hook, so that refusals cost no password
// check, and before the offline hook, so that a refused message is neither
// stored nor delivered.
type Limits struct {
	mqtt.HookBase
	opts    LimitsOptions
	log     zerolog.Logger // sampled: clients trigger refusals at will
	stats   LimitsStats
	now     func() time.Time
	connect bool // per-IP state is kept (connect rate or open connections)

	mu        sync.Mutex
	ips       map[string]*ipState
	lastSweep time.Time

	publishers sync.Map     // *mqtt.Client -> *publishLimits
	users      sync.Map     // user -> *rate.Limiter, the per-user publish buckets
	userSweep  atomic.Int64 // unix nanoseconds of the last sweep of users
	refusedSub sync.Map     // *mqtt.Client -> []byte: SUBACK codes to put in, between OnSubscribe and OnSubscribed
}

// ipState is what Limits keeps per remote IP.
type ipState struct {
	open    int           // accepted connections not yet closed
	connect *rate.Limiter // nil without a connect rate
}

// publishLimits are the token buckets of one connection.
type publishLimits struct {
	messages, bytes *rate.Limiter // nil when that limit is off
}

// sweepEvery is how often idle per-IP entries are looked for.
const sweepEvery = 10 * time.Second

// NewLimits returns the limits hook.
func NewLimits(opts LimitsOptions) *Limits {
	log := opts.Logger.With().Str("component", "limits").Logger()
	return &Limits{
		opts: opts,
		log: log.Sample(&zerolog.BurstSampler{
			Burst: 20, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 100},
		}),
		now:     time.Now,
		connect: opts.MaxConnectionsPerIP > 0 || opts.ConnectRate > 0,
		ips:     map[string]*ipState{},
	}
}

// ID implements mqtt.Hook.
func (h *Limits) ID() string { return "limits" }

// Provides implements mqtt.Hook.
func (h *Limits) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnSubscribe, mqtt.OnSubscribed:
		return true
	}
	return false
}

// Stats returns the refusal counters.
func (h *Limits) Stats() *LimitsStats { return &h.stats }

// newBucket is a token bucket of r per second holding twice that, at
// least 1.
func newBucket(r float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r), max(1, int(2*r)))
}

// takeN takes n tokens if the bucket has them. More than the bucket holds
// is taken as a full bucket: such a message passes only when the bucket is
// full, and empties it.
func takeN(l *rate.Limiter, now time.Time, n int) bool {
	return l.AllowN(now, min(n, l.Burst()))
}

// OnConnect refuses a will topic over the topic limits (0x90).
func (h *Limits) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline || !pk.Connect.WillFlag {
		return nil
	}
	if code, counter, why := h.checkTopic(pk.Connect.WillTopic, false); counter != nil {
		counter.Add(1)
		h.logRefusal(cl, string(pk.Connect.Username), "connection refused", code, why, "will_topic", pk.Connect.WillTopic)
		return refuseConnect(h.opts.Server, cl, code)
	}
	return nil
}

// PerIP reports whether Accept has anything to check.
func (h *Limits) PerIP() bool { return h.connect }

// Accept takes a connect token and a place for a new network connection
// from ip, or names the limit that refuses it ("connect_rate",
// "connections_per_ip"). It runs at accept, before anything is read from
// the connection, for every listener; an accepted connection must be
// given back with Release when it closes, whatever became of it.
func (h *Limits) Accept(ip string) (refusedBy string, ok bool) {
	if !h.connect {
		return "", true
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.lastSweep) >= sweepEvery {
		h.sweep(now)
	}
	st := h.ips[ip]
	if st == nil {
		st = &ipState{}
		if h.opts.ConnectRate > 0 {
			st.connect = newBucket(h.opts.ConnectRate)
		}
		h.ips[ip] = st
	}
	if st.connect != nil && !st.connect.AllowN(now, 1) {
		h.stats.ConnectRate.Add(1)
		return "connect_rate", false
	}
	if max := h.opts.MaxConnectionsPerIP; max > 0 && st.open >= max {
		h.stats.ConnectionsPerIP.Add(1)
		return "connections_per_ip", false
	}
	st.open++
	return "", true
}

// Release gives back the place of a connection from ip that Accept
// admitted, once it is closed.
func (h *Limits) Release(ip string) {
	if !h.connect {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.ips[ip]; st != nil && st.open > 0 {
		st.open--
		if st.idle(h.now()) {
			delete(h.ips, ip)
		}
	}
}

// idle reports whether the entry can be forgotten: nothing open and a
// full connect bucket.
func (st *ipState) idle(now time.Time) bool {
	return st.open == 0 && (st.connect == nil || st.connect.TokensAt(now) >= float64(st.connect.Burst()))
}

// sweep forgets idle IPs; h.mu is held.
func (h *Limits) sweep(now time.Time) {
	h.lastSweep = now
	for ip, st := range h.ips {
		if st.idle(now) {
			delete(h.ips, ip)
		}
	}
}

// OnSessionEstablished gives the connection its publish buckets.
func (h *Limits) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline {
		h.publishLimitsOf(cl)
	}
}

// OnDisconnect forgets the connection's buckets.
func (h *Limits) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.publishers.Delete(cl)
	h.refusedSub.Delete(cl)
}

func (h *Limits) publishLimitsOf(cl *mqtt.Client) *publishLimits {
	if h.opts.PublishRate <= 0 && h.opts.PublishBytesRate <= 0 {
		return nil
	}
	if v, ok := h.publishers.Load(cl); ok {
		return v.(*publishLimits)
	}
	pl := &publishLimits{}
	if h.opts.PublishRate > 0 {
		pl.messages = newBucket(h.opts.PublishRate)
	}
	if h.opts.PublishBytesRate > 0 {
		pl.bytes = newBucket(float64(h.opts.PublishBytesRate))
	}
	v, _ := h.publishers.LoadOrStore(cl, pl)
	return v.(*publishLimits)
}

// Admit is the limits' rule on the entry path (offline.Rule): it refuses
// a client's message whose topic is over the topic limits (0x90) or that
// exceeds the connection's message or byte rate (0x96). Wills and the
// hub's own messages are not rate limited.
func (h *Limits) Admit(in *offline.Inbound) error {
	if in.Origin != offline.FromClient {
		return nil
	}
	return h.checkPublish(in.Client, in.Packet)
}

func (h *Limits) checkPublish(cl *mqtt.Client, pk packets.Packet) error {
	if code, counter, why := h.checkTopic(pk.TopicName, false); counter != nil {
		counter.Add(1)
		return h.refusePublish(cl, pk, code, why)
	}
	if pl := h.publishLimitsOf(cl); pl != nil {
		now := h.now()
		if pl.messages != nil && !pl.messages.AllowN(now, 1) {
			h.stats.PublishRate.Add(1)
			return h.refusePublish(cl, pk, packets.ErrMessageRateTooHigh, "message rate exceeded")
		}
		if pl.bytes != nil && !takeN(pl.bytes, now, len(pk.Payload)) {
			h.stats.PublishBytesRate.Add(1)
			return h.refusePublish(cl, pk, packets.ErrMessageRateTooHigh, "byte rate exceeded")
		}
	}
	if l := h.userBucket(cl); l != nil && !l.AllowN(h.now(), 1) {
		h.stats.UserPublishRate.Add(1)
		if pk.FixedHeader.Qos == 0 {
			h.logRefusal(cl, string(cl.Properties.Username), "publish dropped", packets.ErrMessageRateTooHigh,
				"message rate of the user exceeded", "topic", pk.TopicName)
			return offline.ErrIgnore
		}
		return h.refusePublish(cl, pk, packets.ErrMessageRateTooHigh, "message rate of the user exceeded")
	}
	return nil
}

// userBucket returns the publish bucket shared by every connection of
// cl's user, or nil when the user is not limited.
func (h *Limits) userBucket(cl *mqtt.Client) *rate.Limiter {
	if h.opts.UserPublishRate <= 0 || len(cl.Properties.Username) == 0 {
		return nil
	}
	user := string(cl.Properties.Username)
	if h.opts.Exempt != nil && h.opts.Exempt(user) {
		return nil
	}
	h.sweepUsers()
	if v, ok := h.users.Load(user); ok {
		return v.(*rate.Limiter)
	}
	l := rate.NewLimiter(rate.Limit(h.opts.UserPublishRate), max(1, h.opts.UserPublishBurst))
	v, _ := h.users.LoadOrStore(user, l)
	return v.(*rate.Limiter)
}

// sweepUsers forgets, every sweepEvery, the buckets that are full again:
// a new bucket would be the same, so memory follows the users who
// published lately, not every user ever seen. One caller sweeps; the
// others go on.
func (h *Limits) sweepUsers() {
	now := h.now()
	last := h.userSweep.Load()
	if now.UnixNano()-last < int64(sweepEvery) || !h.userSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	h.users.Range(func(k, v any) bool {
		if l := v.(*rate.Limiter); l.TokensAt(now) >= float64(l.Burst()) {
			h.users.Delete(k)
		}
		return true
	})
}

// refusePublish refuses a message: QoS 1/2 get the code as their answer
// (the entry path sends it in its turn: MQTT 5 PUBACK/PUBREC with the
// code, 3.1.1 the connection closed), QoS 0, which has no answer, ends
// the connection (MQTT 5 with DISCONNECT and the code); the will of a
// disconnected client is then due.
func (h *Limits) refusePublish(cl *mqtt.Client, pk packets.Packet, code packets.Code, why string) error {
	action := "publish refused"
	var err error = code
	if pk.FixedHeader.Qos == 0 || cl.Properties.ProtocolVersion < 5 {
		action = "publish refused, client disconnected"
	}
	if pk.FixedHeader.Qos == 0 {
		if cl.Properties.ProtocolVersion == 5 {
			_ = h.opts.Server.DisconnectClient(cl, code)
		} else {
			cl.Stop(code)
		}
		err = offline.ErrIgnore
	}
	h.logRefusal(cl, string(cl.Properties.Username), action, code, why, "topic", pk.TopicName)
	return err
}

// OnSubscribe refuses filters over the topic limits or past the
// subscription limit. Mochi takes no per-filter answer from this hook, so
// a refused filter is replaced by an empty one, which mochi answers 0x8F
// topic filter invalid without subscribing anything; OnSubscribed then
// puts the real code (0x97 quota exceeded) in the SUBACK.
func (h *Limits) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline || len(pk.Filters) == 0 {
		return pk
	}
	var held map[string]struct{} // the session's filters, loaded when needed
	var codes []byte
	refuse := func(i int, code packets.Code, why string) {
		if codes == nil {
			codes = make([]byte, len(pk.Filters))
			pk.Filters = append([]packets.Subscription(nil), pk.Filters...) // not the caller's array
		}
		codes[i] = code.Code
		h.logRefusal(cl, string(cl.Properties.Username), "subscription refused", code, why, "filter", pk.Filters[i].Filter)
		pk.Filters[i].Filter = ""
	}
	for i, sub := range pk.Filters {
		if code, counter, why := h.checkTopic(sub.Filter, true); counter != nil {
			counter.Add(1)
			refuse(i, code, why)
			continue
		}
		if h.opts.MaxSubscriptions <= 0 || !mqtt.IsValidFilter(sub.Filter, false) {
			continue
		}
		if held == nil {
			held = h.heldFilters(cl)
		}
		if _, ok := held[sub.Filter]; ok {
			continue // replaces a subscription: nothing more held
		}
		if len(held) >= h.opts.MaxSubscriptions {
			h.stats.Subscriptions.Add(1)
			refuse(i, packets.ErrQuotaExceeded, "too many subscriptions")
			continue
		}
		held[sub.Filter] = struct{}{}
	}
	if codes != nil {
		h.refusedSub.Store(cl, codes)
	}
	return pk
}

// heldFilters is the set of filters cl's session holds: mochi's list, and
// the stored record of a persistent session, whose non-shared
// subscriptions the offline hook keeps off mochi's list after a resume.
func (h *Limits) heldFilters(cl *mqtt.Client) map[string]struct{} {
	held := map[string]struct{}{}
	for f := range cl.State.Subscriptions.GetAll() {
		held[f] = struct{}{}
	}
	if h.opts.Sessions != nil {
		rec, err := h.opts.Sessions.GetSession(cl.ID)
		if err == nil && rec != nil {
			for _, sub := range rec.Subscriptions {
				held[sub.Filter] = struct{}{}
			}
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			h.log.Warn().Err(err).Str("client_id", cl.ID).Msg("session record not read; counting mochi's subscriptions only")
		}
	}
	return held
}

// OnSubscribed puts the codes chosen by OnSubscribe into the SUBACK: mochi
// hands the hooks the reason codes it is about to send. Only the filters
// mochi refused as the empty ones are changed, and only for MQTT 5
// (mochi already turned 3.1.1 refusals into 0x80, the only one there is).
func (h *Limits) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	v, ok := h.refusedSub.LoadAndDelete(cl)
	if !ok || cl.Properties.ProtocolVersion != 5 {
		return
	}
	codes := v.([]byte)
	for i := range min(len(codes), len(reasonCodes), len(pk.Filters)) {
		if codes[i] != 0 && pk.Filters[i].Filter == "" && reasonCodes[i] == packets.ErrTopicFilterInvalid.Code {
			reasonCodes[i] = codes[i]
		}
	}
}

// checkTopic checks a topic name or filter against the length and level
// limits; a shared filter's levels are those of the filter underneath.
// The counter to add to is nil when the topic is within the limits.
func (h *Limits) checkTopic(topic string, filter bool) (packets.Code, *atomic.Int64, string) {
	code := packets.ErrTopicNameInvalid
	if filter {
		code = packets.ErrTopicFilterInvalid
	}
	if max := h.opts.MaxTopicLength; max > 0 && len(topic) > max {
		return code, &h.stats.TopicLength, "topic too long"
	}
	if max := h.opts.MaxTopicLevels; max > 0 {
		levels := topic
		if filter {
			if _, inner, shared := splitShared(topic); shared {
				levels = inner
			}
		}
		if strings.Count(levels, "/")+1 > max {
			return code, &h.stats.TopicLevels, "too many topic levels"
		}
	}
	return packets.CodeSuccess, nil, ""
}

// logRefusal writes the one line of a refusal.
func (h *Limits) logRefusal(cl *mqtt.Client, user, msg string, code packets.Code, why, key, value string) {
	if len(value) > 256 {
		value = value[:256] + "..."
	}
	h.log.Info().Str("client_id", cl.ID).Str("user", user).Str("remote", cl.Net.Remote).
		Str("reason", code.Reason).Str("detail", why).Str(key, value).Msg(msg)
}

// trackedIPs is how many IPs have state, for tests.
func (h *Limits) trackedIPs() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ips)
}

var _ mqtt.Hook = (*Limits)(nil)
