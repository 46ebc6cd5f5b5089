// Package hooks holds mqhub's mochi-mqtt hooks, one concern per file.
//
// Hooks run synchronously on the connection's read goroutine, so each one
// stays at microsecond scale; disk and network work goes through bounded
// queues owned by the storage and bridge packages.
package hooks
