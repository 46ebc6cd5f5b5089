package storage

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Key families. One byte each, so a prefix scan over one family never
// touches another; the full layout is in doc.go.
const (
	famMeta     = 'v' // v                      -> format version
	famSession  = 's' // s|sid                  -> Session
	famCounters = 'c' // c|sid                  -> queue counters
	famQueue    = 'q' // q|sid|seq              -> queued Message
	famInflight = 'i' // i|sid|seq              -> packet ID + sent time
	famPacket   = 'p' // p|sid|packetID         -> seq
	famRetained = 'r' // r|topic                -> retained Message
	famGroup    = 'g' // g|name                 -> Group
	famBlock    = 'b' // b|len16(user)|blocked  -> empty (user blocked blocked)
	famSent     = 'm' // m|len16(sender)|id     -> topic the message went to
)

// formatVersion is the on-disk layout version stored under key "v".
const formatVersion = 1

var metaKey = []byte{famMeta}

// sid is a session ID encoded as a 2-byte big-endian length followed by
// its bytes. The length prefix makes "q|ab|..." and "q|abc|..." disjoint
// prefixes whatever bytes a client ID contains.
func checkSID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty session id", ErrInvalid)
	}
	if len(id) > math.MaxUint16 {
		return fmt.Errorf("%w: session id longer than 65535 bytes", ErrInvalid)
	}
	return nil
}

func sidPrefix(fam byte, id string, extra int) []byte {
	k := make([]byte, 0, 3+len(id)+extra)
	k = append(k, fam)
	k = binary.BigEndian.AppendUint16(k, uint16(len(id)))
	return append(k, id...)
}

func sessionKey(id string) []byte  { return sidPrefix(famSession, id, 0) }
func countersKey(id string) []byte { return sidPrefix(famCounters, id, 0) }

func queueKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(sidPrefix(famQueue, id, 8), seq)
}

func inflightKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(sidPrefix(famInflight, id, 8), seq)
}

func packetKey(id string, pid uint16) []byte {
	return binary.BigEndian.AppendUint16(sidPrefix(famPacket, id, 2), pid)
}

func retainedKey(topic string) []byte {
	return append([]byte{famRetained}, topic...)
}

// seqFromKey returns the trailing 8-byte sequence number of a q or i key.
func seqFromKey(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

// sidFromKey returns the session ID of an s key.
func sidFromKey(k []byte) (string, bool) {
	if len(k) < 3 {
		return "", false
	}
	n := int(binary.BigEndian.Uint16(k[1:3]))
	if len(k) < 3+n {
		return "", false
	}
	return string(k[3 : 3+n]), true
}

// famIdentity holds the user store (users.go). A second byte names the
// kind of record, so users, client ID owners and the owner index share one
// family byte and a prefix scan over one kind never touches another:
//
//	u|u|name                 User (versioned binary)
//	u|o|clientID             owner of a client ID: user name, claim time
//	u|n|len16(user)|clientID index of the client IDs a user owns (empty value)
//	u|s|name                 Settings of a user (settings.go); users known
//	                         only from a JWT have settings but no User
const famIdentity = 'u'

const (
	kindUser     = 'u'
	kindOwner    = 'o'
	kindOwned    = 'n'
	kindSettings = 's'
)

func userPrefix() []byte { return []byte{famIdentity, kindUser} }

func userKey(name string) []byte { return append(userPrefix(), name...) }

func ownerKey(clientID string) []byte {
	return append([]byte{famIdentity, kindOwner}, clientID...)
}

// ownedPrefix is the index prefix of one user's client IDs; the user name
// is length-prefixed so "al" never lists "alice"'s client IDs.
func ownedPrefix(user string) []byte {
	k := make([]byte, 0, 4+len(user))
	k = append(k, famIdentity, kindOwned)
	k = binary.BigEndian.AppendUint16(k, uint16(len(user)))
	return append(k, user...)
}

func ownedKey(user, clientID string) []byte {
	return append(ownedPrefix(user), clientID...)
}

// settingsKey is u|s|name (settings.go).
func settingsKey(user string) []byte {
	return append([]byte{famIdentity, kindSettings}, user...)
}

// groupKey is g|name (groups.go). Nothing else lives in the family, so a
// scan of its prefix lists the groups in name order and needs no length
// prefix.
func groupKey(name string) []byte { return append([]byte{famGroup}, name...) }

// blockPrefix is the prefix of the users one user has blocked (blocks.go).
// It is sidPrefix's layout: the length-prefixed user makes "al"'s list
// disjoint from "alice"'s.
func blockPrefix(user string) []byte { return sidPrefix(famBlock, user, 0) }

func blockKey(user, blocked string) []byte {
	return append(sidPrefix(famBlock, user, len(blocked)), blocked...)
}

// splitUserScoped splits a fam|len16(user)|user|rest key (b and m
// families); ok is false for a key too short for its own length prefix.
func splitUserScoped(k []byte) (user, rest string, ok bool) {
	if len(k) < 3 {
		return "", "", false
	}
	n := int(binary.BigEndian.Uint16(k[1:3]))
	if len(k) < 3+n {
		return "", "", false
	}
	return string(k[3 : 3+n]), string(k[3+n:]), true
}

// sentKey is the record of the topic a sender's message ID went to
// (sent.go), length-prefixed like blockKey.
func sentKey(sender, id string) []byte {
	return append(sidPrefix(famSent, sender, len(id)), id...)
}
