// Package broker assembles one mqhub node from a Config: the embedded
// mochi-mqtt server, the hooks, the MQTT listeners (TCP, TLS, WebSocket) and
// the HTTP endpoints, with one lifecycle (Start, Shutdown).
//
// The listeners are our own rather than mochi's so that every connection
// goes through one guarded entry point (guard.go): a deadline for CONNECT, a
// recover that confines a decoder panic to the connection that caused it,
// and the cleanup mochi skips when that happens.
package broker
