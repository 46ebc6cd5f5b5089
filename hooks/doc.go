// Package hooks holds mqhub's mochi-mqtt hooks and messaging rules, one
// concern per file. The rules on messages (Auth.Admit, Limits.Admit,
// NotRetained, Envelope.Admit, Receipts.Admit) are not mochi hooks: they
// are offline.Rule functions the entry path runs for every message,
// whatever way it came in.
//
// Hooks run synchronously on the connection's read goroutine, so each one
// stays at microsecond scale; disk and network work goes through bounded
// queues owned by the storage and bridge packages.
package hooks
