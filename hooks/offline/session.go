package offline

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

// session is an MQTT session known to the hub: a persistent one, online
// or not, or the clean session of a connected client. Only persistent
// sessions have a record in the store (rec.Clean is false); every session
// that was sent a QoS 1/2 message has a queue there.
type session struct {
	id     string
	queued atomic.Bool // a queue entry may exist on disk
	// uncertainUpTo is the last queue entry that may have been sent before
	// the process died without recording it (the session was connected at
	// the time): its first send now is marked DUP, as it might be one.
	uncertainUpTo uint64

	mu     sync.Mutex
	rec    storage.Session // the record, subscriptions included
	stored bool            // rec was written to the store
	sender *sender         // set while a client is connected
	// sentIDs holds the packet IDs of QoS 1 entries sent on an earlier
	// connection of this process and not acknowledged, so that the next
	// connection re-sends them with the same ID [MQTT-4.4.0-1]. QoS 2
	// IDs are written to the store instead (MarkSent), since exactly-once
	// needs them after a restart too; after a crash a QoS 1 entry is
	// re-sent with a new ID and DUP set, which its receiver handles as the
	// duplicate QoS 1 allows. At most one window of entries.
	sentIDs map[uint64]sentID
}

func newSession(rec *storage.Session) *session {
	return &session{id: rec.ClientID, rec: *rec}
}

// restoredSession is a persistent session read back from the store.
func restoredSession(rec *storage.Session) *session {
	s := newSession(rec)
	s.stored = true
	s.queued.Store(true)
	return s
}

// persistent reports whether a client's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// wants reports whether a message on topic published by publisherID goes
// to this session, and whether it keeps its retain flag (some matching
// subscription has Retain As Published).
func (s *session) wants(topic, publisherID string) (deliver, retainAsPublished bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.rec.Subscriptions {
		if mqtt.IsSharedFilter(sub.Filter) || !storage.MatchTopic(sub.Filter, topic) || (sub.NoLocal && publisherID == s.id) {
			continue // shared subscriptions are matched per group (shared.go)
		}
		deliver = true
		retainAsPublished = retainAsPublished || sub.RetainAsPublished
	}
	return deliver, retainAsPublished
}

// retainAsPublished reports the Retain As Published option of the
// session's subscription to filter.
func (s *session) retainAsPublished(filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.rec.Subscriptions {
		if sub.Filter == filter {
			return sub.RetainAsPublished
		}
	}
	return false
}

// delivery gives the QoS and subscription identifiers a message on topic
// is sent with: the highest QoS of the matching subscriptions, capped by
// the published QoS [MQTT-3.8.4-8]. A message queued before its
// subscription was removed keeps its published QoS.
func (s *session) delivery(topic string, published byte) (qos byte, ids []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	matched := false
	var best byte
	for _, sub := range s.rec.Subscriptions {
		if !storage.MatchTopic(innerFilter(sub.Filter), topic) {
			continue
		}
		matched = true
		best = max(best, sub.QoS)
		if sub.Identifier > 0 {
			ids = append(ids, int(sub.Identifier))
		}
	}
	slices.Sort(ids)
	if matched && best < published {
		return best, ids
	}
	return published, ids
}

// sentID is how a queue entry was last sent on a connection that ended.
type sentID struct {
	pid uint16
	// released: the client answered PUBREC (QoS 2) and the hub sent
	// PUBREL, so the message is not sent again, only PUBREL [MQTT-4.4.0-1].
	released bool
}

// rememberSent records that entry seq was sent with packet ID pid and not
// acknowledged when its connection ended.
func (s *session) rememberSent(seq uint64, id sentID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sentIDs == nil {
		s.sentIDs = map[uint64]sentID{}
	}
	s.sentIDs[seq] = id
}

// sentBefore returns (and forgets) how entry seq was sent on an earlier
// connection, if it was.
func (s *session) sentBefore(seq uint64) (id sentID, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok = s.sentIDs[seq]
	// Entries are re-sent in order: one below seq was removed meanwhile
	// (expired, dropped) and will not come.
	for old := range s.sentIDs {
		if old <= seq {
			delete(s.sentIDs, old)
		}
	}
	return id, ok
}

// attach starts delivery to a newly connected client.
func (s *session) attach(h *Hook, cl *mqtt.Client) *sender {
	sd := newSender(h, s, cl)
	s.mu.Lock()
	s.sender = sd
	s.mu.Unlock()
	sd.kick()
	return sd
}

// detach stops delivery to cl (any client when cl is nil) and reports
// whether cl was the session's current client.
func (s *session) detach(cl *mqtt.Client) bool {
	s.mu.Lock()
	sd := s.sender
	if sd == nil || (cl != nil && sd.cl != cl) {
		s.mu.Unlock()
		return false
	}
	s.sender = nil
	s.mu.Unlock()
	sd.stop()
	return true
}

// current returns the sender of cl if cl is the session's connected client.
func (s *session) current(cl *mqtt.Client) *sender {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sender != nil && s.sender.cl == cl {
		return s.sender
	}
	return nil
}

// user is the user the session belongs to.
func (s *session) user() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.User
}

func (s *session) online() *sender {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sender
}

func (s *session) record() storage.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.rec
	rec.Subscriptions = slices.Clone(s.rec.Subscriptions)
	return rec
}

// OnSessionEstablish runs on a new connection before mochi inherits an
// existing session. It stops delivery to the previous connection and hides
// our subscriptions from mochi's inheritance (mochi would put them back in
// its own index); a clean start discards the stored session.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.cancelWill(cl.ID) // [MQTT-3.1.3-9]
	s := h.sessionOf(cl.ID)
	if s == nil {
		return
	}
	s.detach(nil)
	if old, ok := h.server.Clients.Get(cl.ID); ok {
		for _, sub := range s.record().Subscriptions {
			old.State.Subscriptions.Delete(sub.Filter)
		}
	}
	if pk.Connect.Clean {
		h.dropSession(s, "clean start")
	}
}

// OnSessionEstablished runs after CONNACK and before the client's first
// packet is read: delivery of the queue starts here.
func (h *Hook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.takeWill(cl)
	s := h.sessionOf(cl.ID)
	resumed := s != nil
	if s == nil {
		s = newSession(&storage.Session{ClientID: cl.ID})
		h.mu.Lock()
		if h.stopped {
			h.mu.Unlock()
			return
		}
		h.sessions[cl.ID] = s
		h.mu.Unlock()
	}
	s.mu.Lock()
	s.rec.User = string(cl.Properties.Username)
	s.rec.ProtocolVersion = cl.Properties.ProtocolVersion
	s.rec.ExpiryInterval = expiryInterval(h.server, cl)
	s.rec.Clean = !persistent(cl)
	s.rec.DisconnectedAt = 0
	s.mu.Unlock()
	// A new session that ends with its connection ends with the process
	// too: its queue needs no fsync (storage/volatile.go). A resumed one
	// whose client lowered its expiry to 0 keeps its queue as it was (it
	// may hold sent-marks).
	if !resumed {
		h.store.SetVolatile(cl.ID, !persistent(cl))
	}
	h.saveSession(s)
	// Mochi's flow control must stay off for this client: after every
	// packet it reads, mochi looks for a held-back message with
	// Inflight.NextImmediate, which takes the inflight read lock twice and
	// deadlocks against a concurrent Inflight.Set (found under load here).
	// With a send quota of 0 that look never happens; our sender enforces
	// the client's Receive Maximum instead.
	cl.State.Inflight.ResetSendQuota(0)
	s.attach(h, cl)
}

// expiryInterval is the session expiry in seconds as the store keeps it.
// A 3.1.1 persistent session lasts as long as the server allows.
func expiryInterval(server *mqtt.Server, cl *mqtt.Client) uint32 {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval
	}
	return server.Options.Capabilities.MaximumSessionExpiryInterval
}

// OnDisconnect stops delivery; a session that ends with its connection
// (clean, or MQTT 5 session expiry 0) is deleted with its queue.
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.forgetPipeline(cl)
	h.unsubscribed.Delete(cl)
	h.endWill(cl, err, expire)
	s := h.sessionOf(cl.ID)
	if s == nil || !s.detach(cl) {
		return // not ours, or an old connection of a session taken over
	}
	if expire {
		h.dropSession(s, "session ended with its connection")
		return
	}
	s.mu.Lock()
	s.rec.DisconnectedAt = time.Now().UnixNano()
	s.mu.Unlock()
	h.saveSession(s)
}

// OnClientExpired deletes a session whose expiry interval passed.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	if s := h.sessionOf(cl.ID); s != nil && s.online() == nil {
		h.stats.ExpiredTotal.Add(1)
		h.dropSession(s, "session expired")
	}
}

// OnSubscribed moves new subscriptions, shared ones included, from mochi's
// index to ours (and, for a persistent session, stores them before SUBACK
// is sent).
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	s := h.sessionOf(cl.ID)
	if s == nil || s.current(cl) == nil {
		return
	}
	var added []packets.Subscription
	var existed []bool
	for i, sub := range pk.Filters {
		if i >= len(reasonCodes) || reasonCodes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		h.server.Topics.Unsubscribe(sub.Filter, cl.ID)
		h.subscribe(cl.ID, sub.Filter)
		stored := fromPacketSubscription(sub)
		s.mu.Lock()
		i := slices.IndexFunc(s.rec.Subscriptions, func(x storage.Subscription) bool { return x.Filter == sub.Filter })
		if i >= 0 {
			s.rec.Subscriptions[i] = stored
		} else {
			s.rec.Subscriptions = append(s.rec.Subscriptions, stored)
		}
		s.mu.Unlock()
		added = append(added, sub)
		existed = append(existed, i >= 0)
	}
	if len(added) > 0 {
		h.saveSession(s)
	}
	for i, sub := range added {
		if !mqtt.IsSharedFilter(sub.Filter) { // none for shared subscriptions (MQTT 5, 4.8.2)
			h.sendRetained(cl, s, sub, existed[i])
		}
	}
}

// OnUnsubscribed removes subscriptions from our index and the record.
// Mochi answered each filter from its own index, where our subscriptions
// are not: the ones we held get their 0x00 in OnPacketEncode.
func (h *Hook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	s := h.sessionOf(cl.ID)
	if s == nil || s.current(cl) == nil {
		return
	}
	held := make([]bool, len(pk.Filters))
	for i, sub := range pk.Filters {
		h.unsubscribe(cl.ID, sub.Filter)
		s.mu.Lock()
		n := len(s.rec.Subscriptions)
		s.rec.Subscriptions = slices.DeleteFunc(s.rec.Subscriptions, func(x storage.Subscription) bool { return x.Filter == sub.Filter })
		held[i] = len(s.rec.Subscriptions) < n
		s.mu.Unlock()
	}
	h.unsubscribed.Store(cl, unsubscribed{packetID: pk.PacketID, held: held})
	h.saveSession(s)
}

// unsubscribed is what an UNSUBSCRIBE removed from our index, for its
// UNSUBACK.
type unsubscribed struct {
	packetID uint16
	held     []bool
}

// OnPacketEncode corrects mochi's UNSUBACK: mochi answers 0x11 (no
// subscription existed) for every filter missing from its own index,
// which never holds our sessions' subscriptions. It runs on the same
// goroutine as OnUnsubscribed, right after it.
func (h *Hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Unsuback {
		return pk
	}
	v, ok := h.unsubscribed.LoadAndDelete(cl)
	if !ok {
		return pk
	}
	u := v.(unsubscribed)
	if u.packetID != pk.PacketID || len(u.held) != len(pk.ReasonCodes) {
		return pk
	}
	codes := slices.Clone(pk.ReasonCodes)
	for i, held := range u.held {
		if held && codes[i] == packets.CodeNoSubscriptionExisted.Code {
			codes[i] = packets.CodeSuccess.Code
		}
	}
	pk.ReasonCodes = codes
	return pk
}

// saveSession writes a persistent session's record durably; a failure is
// logged and the in-memory state stays authoritative until the next save.
// Clean sessions are not stored.
func (h *Hook) saveSession(s *session) {
	rec := s.record()
	if rec.Clean {
		return
	}
	s.mu.Lock()
	s.stored = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	if err := h.store.PutSession(ctx, &rec); err != nil {
		h.sampled.Error().Err(err).Str("client_id", s.id).Msg("session not saved")
	}
}

// dropSession forgets a session: its subscriptions, its record and queue.
func (h *Hook) dropSession(s *session, why string) {
	s.detach(nil)
	h.mu.Lock()
	if h.sessions[s.id] == s {
		delete(h.sessions, s.id)
	}
	h.mu.Unlock()
	for _, sub := range s.record().Subscriptions {
		h.unsubscribe(s.id, sub.Filter)
	}
	h.store.SetVolatile(s.id, false)
	s.mu.Lock()
	onDisk := s.stored || s.queued.Load()
	s.mu.Unlock()
	if !onDisk {
		return // a clean session that never had a queue: nothing to delete
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.writeTimeout)
	defer cancel()
	if err := h.store.DeleteSession(ctx, s.id); err != nil {
		h.sampled.Error().Err(err).Str("client_id", s.id).Msg("session not deleted")
		return
	}
	h.log.Debug().Str("client_id", s.id).Str("reason", why).Msg("persistent session deleted")
}

// offlineClient is the disconnected mochi client standing for a restored
// session until its device reconnects.
func offlineClient(server *mqtt.Server, rec *storage.Session) *mqtt.Client {
	cl := server.NewClient(nil, "", rec.ClientID, false)
	cl.Properties.Username = []byte(rec.User)
	cl.Properties.ProtocolVersion = rec.ProtocolVersion
	cl.Properties.Clean = false
	if rec.ProtocolVersion == 5 {
		cl.Properties.Props.SessionExpiryInterval = rec.ExpiryInterval
		cl.Properties.Props.SessionExpiryIntervalFlag = true
	}
	cl.Stop(packets.ErrServerShuttingDown) // marks it disconnected from now
	return cl
}

// subscribe adds a subscription to the index it belongs to.
func (h *Hook) subscribe(clientID, filter string) {
	if mqtt.IsSharedFilter(filter) {
		h.shares.subscribe(clientID, filter)
		return
	}
	h.index.subscribe(clientID, filter)
}

func (h *Hook) unsubscribe(clientID, filter string) {
	if mqtt.IsSharedFilter(filter) {
		h.shares.unsubscribe(clientID, filter)
		return
	}
	h.index.unsubscribe(clientID, filter)
}
