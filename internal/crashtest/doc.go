// Package crashtest holds end-to-end crash tests of the mqhub binary. The
// hub runs as a child process (built once with go build) on one data
// directory and fixed loopback ports, and is killed with SIGKILL at random
// moments while real MQTT clients use it; after the last restart the tests
// check the durability promise: every message whose PUBACK a publisher
// received reaches its persistent subscriber.
//
// The tests are slow (they build and restart the binary) and are skipped
// with -short. MQHUB_CRASH_SEED replays the kill moments of a failed run
// and MQHUB_CRASH_ROUNDS runs more kill rounds (a soak).
package crashtest
