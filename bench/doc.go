// Package bench is mqhub's load generator and side-by-side comparison runner.
//
// Every scenario speaks plain MQTT 5 through paho.golang clients, so it runs
// against any broker: mqhub, mosquitto or anything else listening on a TCP
// address. Each scenario is bounded in count and time (a duration and/or a
// message count, plus a hard timeout) and returns a [Result] whose figures
// are flat numbers, which is what lets [Compare] take medians and ratios
// without knowing the scenarios.
//
// Scenarios (see [Scenarios]):
//
//   - fanin-qos0, fanin-qos1: N publishers to one wildcard subscriber;
//     throughput, loss, duplicates.
//   - p2p-latency: N user pairs exchanging QoS 1 messages on u/{user}/inbox;
//     end-to-end latency quantiles.
//   - fanout, fanout-qos1: one publisher to many subscribers of one topic
//     (QoS 0, or 1 with every copy acknowledged); deliveries/s and latency
//     quantiles.
//   - conns: many idle connections with keepalive; connect rate and broker
//     memory per connection.
//   - offline-drain: persistent sessions that queue while offline and drain
//     on reconnect; drain rate, loss, duplicates, reordering.
//   - receipts (mqhub only): N sender/recipient pairs; QoS 1 direct
//     messages at a fixed rate, the hub's delivered receipt and the
//     recipient's read receipt back to the sender; sent, delivered and
//     read latency quantiles, missing and duplicate receipts. Receipts
//     flow between authenticated users only, so it logs in with JWTs it
//     signs from the hub's HS256 secret (--jwt-secret-file).
//
// Every message payload starts with a small header (see [EncodePayload]):
// a stream id, a sequence number and a send timestamp, so that a receiver
// can count loss, duplicates and reordering per stream and measure latency
// without any side channel. Publisher and receivers live in the same
// process, so the timestamp is read from one monotonic clock.
//
// From the command line:
//
//	mqhub bench fanin-qos1 --target 127.0.0.1:1883 -n 10 --duration 5s --pid $(pidof mosquitto)
//	mqhub bench conns --target 127.0.0.1:1883 -n 19000 --hold 30s
//	mqhub bench receipts --target 127.0.0.1:1883 --jwt-secret-file /etc/mqhub/jwt-secret
//	mqhub bench compare --rounds 3 --out bench/out
//
// A scenario prints a progress bar on stderr and one JSON line (a [Result])
// on stdout. compare starts mqhub and mosquitto itself on free loopback
// ports, prints a table of medians with the ratio mqhub/mosquitto, and
// writes compare.json plus one SVG bar chart per scenario; receipts runs
// against mqhub alone (n/a for mosquitto), which compare starts with a
// random JWT secret.
//
// Only the test files import mqhub server code; the package itself depends
// on the MQTT protocol alone, plus the JWT library to sign receipts' logins
// (see DESIGN.md, "Layout").
package bench
