package offline

import (
	"errors"
	"slices"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqhub/mqhub/storage"
)

// maxQoS0Backlog bounds the QoS 0 messages waiting for an online session's
// sender. A publisher finding it full waits up to maxQoS0Wait for room
// (back-pressure, so that a fast fan-in does not simply lose messages),
// then the message is dropped and counted, as QoS 0 allows. After such a
// timeout the session counts as congested and further messages are dropped
// at once until its sender has written what it took: a stuck subscriber
// costs its publishers one wait, not one per message.
const (
	maxQoS0Backlog = 512
	maxQoS0Wait    = time.Second
)

// readBatch is how many queue entries one disk read returns at most.
const readBatch = 128

// inflight is a queue entry sent and not yet acknowledged. The message is
// kept (at most a window's worth) when Rules.Acknowledged wants it.
type inflight struct {
	seq      uint64
	size     int64 // the entry's Size, for the store's acknowledgement
	msg      *storage.Message
	released bool // QoS 2: PUBREC received, PUBREL sent; PUBCOMP ends it
}

// sender delivers one session's queue to its connected client. It runs a
// goroutine only while there is something to do (kick starts one when none
// runs), so an idle connection costs no goroutine of ours.
type sender struct {
	h      *Hook
	s      *session
	cl     *mqtt.Client
	window int // unacknowledged messages allowed: client Receive Maximum, capped
	// resumable: the session outlives the connection, so the packet ID
	// of each send is recorded for a re-send after a reconnect.
	resumable bool

	mu        sync.Mutex
	closed    bool
	inflight  map[uint16]inflight // by packet ID: sent and not acknowledged
	lastSeq   uint64              // highest seq sent on this connection
	qos0      []packets.Packet    // live QoS 0 messages, not queued on disk
	fresh     []storage.Entry     // entries just appended (offer), in order
	room      chan struct{}       // signalled when the QoS 0 backlog was taken
	congested bool                // a publisher timed out waiting for room

	kicker kicker
}

func newSender(h *Hook, s *session, cl *mqtt.Client) *sender {
	window := h.maxInflight
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.ReceiveMaximum > 0 {
		window = min(window, int(cl.Properties.Props.ReceiveMaximum))
	}
	return &sender{h: h, s: s, cl: cl, window: window, resumable: persistent(cl), inflight: map[uint16]inflight{}, room: make(chan struct{}, 1)}
}

// kick makes sure a goroutine sends what can be sent now.
func (sd *sender) kick() { sd.kicker.kick(&sd.h.senders, sd.fill) }

// stop ends delivery on this connection. The packet IDs still in flight
// are remembered for a persistent session, so that the next sender re-sends
// them from the queue, in order, with DUP and the same IDs.
func (sd *sender) stop() {
	sd.mu.Lock()
	sd.closed = true
	for id, f := range sd.inflight {
		if sd.resumable {
			sd.s.rememberSent(f.seq, sentID{pid: id, released: f.released})
		}
	}
	sd.inflight = map[uint16]inflight{}
	sd.qos0 = nil
	sd.fresh = nil
	sd.mu.Unlock()
}

// pushQoS0 hands a live QoS 0 message to the sender. It runs on the
// publisher's goroutine: when the backlog is full it waits, bounded, for
// the sender to take it.
func (sd *sender) pushQoS0(pk packets.Packet) {
	var timeout <-chan time.Time
	for {
		sd.mu.Lock()
		if sd.closed {
			sd.mu.Unlock()
			return
		}
		if len(sd.qos0) < maxQoS0Backlog {
			sd.qos0 = append(sd.qos0, pk)
			sd.mu.Unlock()
			sd.kick()
			return
		}
		congested := sd.congested
		sd.mu.Unlock()
		if congested {
			sd.h.stats.QoS0Dropped.Add(1)
			return
		}
		sd.kick()
		if timeout == nil {
			timeout = time.After(maxQoS0Wait)
		}
		select {
		case <-sd.room:
		case <-timeout:
			sd.mu.Lock()
			sd.congested = true
			sd.mu.Unlock()
			sd.h.stats.QoS0Dropped.Add(1)
			return
		}
	}
}

// complete handles the client's acknowledgement of a packet ID: the entry
// leaves the queue (after Rules.Acknowledged, when set, made its writes
// durable) and the window opens.
func (sd *sender) complete(packetID uint16) {
	sd.mu.Lock()
	f, ok := sd.inflight[packetID]
	delete(sd.inflight, packetID)
	sd.mu.Unlock()
	if !ok {
		return
	}
	sd.h.stats.Delivered.Add(1)
	// done comes from the store's commit goroutine, which must never wait
	// to submit a write itself: the acker removes those entries. Entries
	// with nothing to write are removed here, on the client's reader, so
	// that a client acknowledging faster than the store removes waits for
	// it (back-pressure).
	id, h := sd.s.id, sd.h
	later := f.msg != nil && h.rules.Acknowledged(id, sd.s.user(), f.msg, func(err error) {
		if err != nil {
			h.sampled.Error().Err(err).Str("client_id", id).Uint64("seq", f.seq).Msg("acknowledgement not processed; the entry will be sent again")
			return
		}
		h.acks.add(id, storage.AckRef{Seq: f.seq, Size: f.size})
	})
	if !later {
		sd.ack(f.seq, f.size)
	}
	sd.kick()
}

func (sd *sender) ack(seq uint64, size int64) {
	err := sd.h.store.AckEntriesAsync(sd.s.id, []storage.AckRef{{Seq: seq, Size: size}}, func(err error) {
		if err != nil {
			sd.h.sampled.Error().Err(err).Str("client_id", sd.s.id).Uint64("seq", seq).Msg("acknowledged entry not removed; it will be sent again")
		}
	})
	if err != nil {
		sd.h.sampled.Error().Err(err).Str("client_id", sd.s.id).Uint64("seq", seq).Msg("acknowledged entry not removed; it will be sent again")
	}
}

// heldWriter is a connection that can gather writes into one: the
// broker's connections are (broker/heldwrites.go).
type heldWriter interface {
	HoldWrites()
	ReleaseWrites() error
}

// holdWrites gathers the packets written to cl until the returned release
// runs into as few writes as possible.
func holdWrites(cl *mqtt.Client) (release func()) {
	hw, ok := cl.Net.Conn.(heldWriter)
	if !ok {
		return func() {}
	}
	hw.HoldWrites()
	return func() { _ = hw.ReleaseWrites() }
}

// fill sends live QoS 0 messages, then queue entries while the window has
// room, in order: those the store just handed over (offer), else read
// back from the store.
func (sd *sender) fill() {
	for sd.fillOnce() {
	}
}

// fillOnce sends what is waiting now, each kind in as few writes as
// possible, and reports whether there may be more.
func (sd *sender) fillOnce() bool {
	sd.mu.Lock()
	if sd.closed {
		sd.mu.Unlock()
		return false
	}
	live := sd.qos0
	sd.qos0 = nil
	room := sd.window - len(sd.inflight)
	after := sd.lastSeq
	sd.mu.Unlock()

	if len(live) > 0 {
		if !sd.writeLive(live) {
			return false
		}
		sd.mu.Lock()
		sd.congested = false
		sd.mu.Unlock()
		select {
		case sd.room <- struct{}{}:
		default:
		}
	}
	if room <= 0 || !sd.s.queued.Load() {
		return false // no window, or nothing was ever queued (QoS 0 only)
	}
	entries := sd.takeFresh(after, min(room, readBatch))
	if entries == nil {
		var err error
		entries, err = sd.h.store.Read(sd.s.id, after, min(room, readBatch))
		if err != nil {
			if !errors.Is(err, storage.ErrClosed) {
				sd.h.sampled.Error().Err(err).Str("client_id", sd.s.id).Msg("queue read failed")
			}
			return false
		}
	}
	if len(entries) == 0 {
		return false
	}
	sent, marks := sd.sendEntries(entries)
	// The packet IDs are recorded after the flush: a full store request
	// queue must not hold back messages already written.
	for _, m := range marks {
		if err := sd.h.store.MarkSentAsync(sd.s.id, m.seq, m.pid, nil); err != nil {
			return false
		}
	}
	return sent
}

// idTaken reports whether packet ID pid is in use on the connection: by
// one of our sends in flight, or in mochi's map (an inbound QoS 2 flow, or
// a QoS 2 send of ours).
func (sd *sender) idTaken(pid uint16) bool {
	if _, ok := sd.cl.State.Inflight.Get(pid); ok {
		return true
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	_, ok := sd.inflight[pid]
	return ok
}

// nextPacketID returns a packet ID free on the connection. Mochi's
// NextPacketID skips the IDs in its map only; ours in flight (at most a
// window, fewer than the 65,535 IDs) are skipped here.
func (sd *sender) nextPacketID() (uint16, bool) {
	for range 1 << 16 {
		next, err := sd.cl.NextPacketID()
		if err != nil {
			return 0, false
		}
		sd.mu.Lock()
		_, ours := sd.inflight[uint16(next)]
		sd.mu.Unlock()
		if !ours {
			return uint16(next), true
		}
	}
	return 0, false
}

// sentMark is the packet ID a queue entry was sent with.
type sentMark struct {
	seq uint64
	pid uint16
}

// sendEntries writes queue entries in as few writes as possible. It
// reports whether sending may go on, and the packet IDs to record.
func (sd *sender) sendEntries(entries []storage.Entry) (more bool, marks []sentMark) {
	defer holdWrites(sd.cl)()
	for i := range entries {
		ok, mark := sd.send(&entries[i])
		if mark.pid != 0 {
			marks = append(marks, mark)
		}
		if !ok {
			return false, marks
		}
	}
	return true, marks
}

// writeLive writes live QoS 0 messages and reports whether the connection
// still takes writes.
func (sd *sender) writeLive(live []packets.Packet) bool {
	defer holdWrites(sd.cl)()
	for _, pk := range live {
		if err := sd.h.writePublish(sd.cl, pk); err != nil && !errors.Is(err, packets.ErrPacketTooLarge) {
			return false
		}
	}
	return true
}

// send writes one queue entry and reports whether sending may go on and,
// for a resumable session, the packet ID to record for the entry.
func (sd *sender) send(e *storage.Entry) (more bool, mark sentMark) {
	revoked := !sd.h.mayRead(sd.s, e.Message.Topic) // access revoked after it was queued
	if revoked || sd.h.expiredByCap(e.Message.ExpiresAt, e.Message.Created, time.Now()) {
		if revoked {
			sd.h.stats.Revoked.Add(1)
		} else {
			sd.h.stats.CapExpired.Add(1)
		}
		sd.mu.Lock()
		sd.lastSeq = e.Seq
		sd.mu.Unlock()
		sd.ack(e.Seq, e.Size)
		return true, mark
	}
	qos, ids := sd.s.delivery(e.Message.Topic, e.Message.QoS)
	pk := toPacket(&e.Message, qos, ids)
	if qos == 0 {
		sd.mu.Lock()
		if sd.closed {
			sd.mu.Unlock()
			return false, mark
		}
		sd.lastSeq = e.Seq
		sd.mu.Unlock()
		err := sd.h.writePublish(sd.cl, pk)
		if err != nil && !errors.Is(err, packets.ErrPacketTooLarge) {
			return false, mark
		}
		sd.ack(e.Seq, e.Size)
		return true, mark
	}

	// Re-send with the packet ID of the earlier attempt [MQTT-4.4.0-1],
	// unless mochi already uses that ID on this connection. The ID is on
	// disk for QoS 2, and in memory for QoS 1 (sentIDs in session.go).
	pid := e.PacketID
	resent := pid != 0
	released := false
	if pid == 0 {
		var before sentID
		before, resent = sd.s.sentBefore(e.Seq)
		pid, released = before.pid, before.released
	}
	if released && !sd.idTaken(pid) {
		return sd.release(e, pid)
	}
	if pid == 0 || sd.idTaken(pid) {
		next, ok := sd.nextPacketID()
		if !ok {
			return false, mark // all IDs in use: wait for acknowledgements
		}
		pid = next
	}
	pk.PacketID = pid
	pk.FixedHeader.Dup = resent || e.Seq <= sd.s.uncertainUpTo
	if pid != e.PacketID && sd.resumable && qos == 2 {
		mark = sentMark{e.Seq, pid}
	}

	sd.mu.Lock()
	if sd.closed {
		sd.mu.Unlock()
		return false, mark
	}
	var msg *storage.Message // kept for Rules.Acknowledged only
	if r := sd.h.rules; r.Acknowledged != nil && (r.Acknowledges == nil || r.Acknowledges(&e.Message)) {
		m := e.Message
		msg = &m
	}
	sd.inflight[pid] = inflight{seq: e.Seq, size: e.Size, msg: msg}
	sd.lastSeq = e.Seq
	sd.mu.Unlock()
	if pk.FixedHeader.Dup {
		sd.h.stats.Resent.Add(1)
	}

	err := sd.h.writePublish(sd.cl, pk)
	if errors.Is(err, packets.ErrPacketTooLarge) {
		// The client said it cannot take a packet this big [MQTT-3.1.2-25].
		sd.h.stats.TooLarge.Add(1)
		sd.h.sampled.Warn().Str("client_id", sd.s.id).Str("topic", pk.TopicName).Msg("message larger than the client's maximum packet size dropped")
		sd.mu.Lock()
		delete(sd.inflight, pid)
		sd.mu.Unlock()
		sd.ack(e.Seq, e.Size)
		return true, sentMark{}
	}
	return err == nil, mark
}

// Appended offers a message just appended to a session's queue to its
// sender, if the session is online (storage.Options.OnAppended); Visible
// follows and wakes it.
func (h *Hook) Appended(session string, seq uint64, m *storage.Message, size int64) {
	if s := h.sessionOf(session); s != nil {
		if sd := s.online(); sd != nil {
			sd.offer(seq, m, size)
		}
	}
}

// maxFresh bounds the entries a sender keeps from Appended; beyond it, it
// reads them back from the store.
const maxFresh = 256

// offer keeps a just-appended entry so that fill need not read it back.
func (sd *sender) offer(seq uint64, m *storage.Message, size int64) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.closed || seq <= sd.lastSeq || len(sd.fresh) >= maxFresh {
		return
	}
	if n := len(sd.fresh); n > 0 && sd.fresh[n-1].Seq+1 != seq {
		sd.fresh = sd.fresh[:0] // not contiguous: start again from here
	}
	sd.fresh = append(sd.fresh, storage.Entry{Seq: seq, Message: *m, Size: size})
}

// takeFresh returns up to max offered entries that continue right after
// seq after, or nil when the next entry must be read from the store: it
// was not offered (the sender fell behind, or the entry is a re-send), or
// it has expired (Read drops it).
func (sd *sender) takeFresh(after uint64, max int) []storage.Entry {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	i := 0
	for i < len(sd.fresh) && sd.fresh[i].Seq <= after {
		i++ // already sent from a read
	}
	sd.fresh = sd.fresh[i:]
	if len(sd.fresh) == 0 || sd.fresh[0].Seq != after+1 {
		return nil
	}
	now := time.Now().Unix()
	n := 0
	for n < len(sd.fresh) && n < max && !sd.fresh[n].Message.Expired(now) {
		n++
	}
	if n == 0 {
		return nil
	}
	out := slices.Clone(sd.fresh[:n])
	sd.fresh = sd.fresh[n:]
	if len(sd.fresh) == 0 {
		sd.fresh = nil
	}
	return out
}

// Visible wakes the senders of online sessions whose queues just changed;
// the store calls it (storage.Options.OnVisible) as soon as new entries can
// be read, before their fsync.
func (h *Hook) Visible(sessions []string) {
	for _, id := range sessions {
		if s := h.sessionOf(id); s != nil {
			if sd := s.online(); sd != nil {
				sd.kick()
			}
		}
	}
}

// OnPacketRead sees PUBLISH packets before mochi checks them (frontDoor)
// and the acknowledgements of our sends before mochi does.
//
// The hub's sends never enter mochi's inflight map: mochi keeps inbound and
// outbound packet IDs in that one map (mochi #545), so an inbound QoS 2
// PUBLISH reusing one of our IDs deleted our entry (and the client's
// PUBREC for it was answered PUBREL 0x92), and the client's PUBACK for our
// message deleted mochi's record of its own QoS 2 publish (whose re-send
// was then delivered twice). The two directions have separate ID spaces
// in MQTT: PUBACK, PUBREC and PUBCOMP from a client answer what the server
// sent, PUBLISH and PUBREL are the client's own. So the answers to our
// sends are handled here, PUBREL included, and hidden from mochi.
func (h *Hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return h.frontDoor(cl, pk)
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
	default:
		return pk, nil
	}
	s := h.sessionOf(cl.ID)
	if s == nil {
		return pk, nil
	}
	sd := s.current(cl)
	if sd == nil || !sd.acknowledged(pk) {
		return pk, nil // an answer to mochi's own send (shared subscriptions)
	}
	// Mochi gets a PUBACK for packet ID 0, which it ignores (no send has
	// ID 0): nothing of its state changes.
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}}, nil
}

// acknowledged handles the client's answer to one of our sends and reports
// whether the packet ID was ours: PUBACK (QoS 1), PUBREC with an error and
// PUBCOMP (QoS 2) complete the entry; PUBREC is answered with PUBREL.
func (sd *sender) acknowledged(pk packets.Packet) bool {
	sd.mu.Lock()
	f, ok := sd.inflight[pk.PacketID]
	if ok && pk.FixedHeader.Type == packets.Pubrec && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		f.released = true
		sd.inflight[pk.PacketID] = f
	}
	sd.mu.Unlock()
	if !ok {
		return false
	}
	if pk.FixedHeader.Type == packets.Pubrec && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		_ = sd.cl.WritePacket(pubrel(pk.PacketID)) // [MQTT-4.3.3-4]
		return true
	}
	sd.complete(pk.PacketID)
	return true
}

func pubrel(pid uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: pid}
}

// release re-sends PUBREL for an entry whose PUBREC came on an earlier
// connection [MQTT-4.4.0-1]; its PUBCOMP completes it.
func (sd *sender) release(e *storage.Entry, pid uint16) (more bool, mark sentMark) {
	sd.mu.Lock()
	if sd.closed {
		sd.mu.Unlock()
		return false, mark
	}
	var msg *storage.Message
	if r := sd.h.rules; r.Acknowledged != nil && (r.Acknowledges == nil || r.Acknowledges(&e.Message)) {
		m := e.Message
		msg = &m
	}
	sd.inflight[pid] = inflight{seq: e.Seq, size: e.Size, msg: msg, released: true}
	sd.lastSeq = e.Seq
	sd.mu.Unlock()
	return sd.cl.WritePacket(pubrel(pid)) == nil, mark
}
