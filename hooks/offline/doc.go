// Package offline makes MQTT sessions durable: it is the mochi hook that
// keeps the promise "a message acknowledged to the sender is safe and will
// reach the recipient".
//
// Mochi keeps a disconnected session's messages in memory, capped at 65,535
// packet IDs, sends PUBACK before any storage hook runs, drops QoS 1/2
// messages for slow subscribers and re-sends queued messages out of order.
// Under load its QoS 1/2 delivery can also deadlock: Inflight.NextImmediate
// takes a read lock twice, and a publisher's Inflight.Set between the two
// blocks both for good (publishers then never get their PUBACK).
//
// It is also the entry path (entry.go): every message that enters the hub,
// a client's PUBLISH (by topic name or alias), a will (will.go: the hook
// takes wills from mochi and publishes them itself) or a message the hub
// makes, meets the messaging rules (Rules.Admit) there once, in order,
// before it is routed; and every answer to a client's QoS 1 publish leaves
// through its connection's pipeline, in the order of the PUBLISHes.
//
// So this package takes QoS 1/2 delivery over from mochi for every session;
// persistent ones (MQTT 5 session expiry > 0, 3.1.1 clean session = false)
// also survive their connection and the process:
//
//   - subscriptions live in this package's index (and, for persistent
//     sessions, in the store), not in mochi's topic index, so mochi never
//     delivers to them;
//   - OnPublish (which runs before mochi acknowledges) appends a QoS 1/2
//     message to the disk queue of every matching session and acknowledges
//     only when the write is durable, so PUBACK/PUBREC means "safe", and a
//     slow subscriber's backlog waits on disk instead of being dropped;
//   - a sender per online session reads its queue from disk in order and
//     writes it to the client, at most Receive Maximum unacknowledged at a
//     time, assigning packet IDs at send time; PUBACK/PUBCOMP removes the
//     entry; entries sent but not acknowledged before a disconnect are
//     re-sent with DUP and their packet ID on the next connection;
//   - sessions are restored at start from the store, so a client resuming
//     after a restart gets session present and its queue.
//
// QoS 0 goes to online sessions only, through a small bounded backlog per
// session. Retained messages are kept in the store and queued for a
// session when it subscribes (retained.go). Shared subscriptions stay on
// mochi's in-memory path, with the block lists applied in
// OnSelectSubscribers (shared.go). Clean sessions are never stored; a
// queue they leave behind in a crash is deleted at start.
package offline
