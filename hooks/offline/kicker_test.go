package offline

import (
	"sync/atomic"
	"testing"
)

// TestKickAfterStopStartsNothing: a kick that comes after the hook
// stopped (a store commit completing late) runs nothing, and stop waits
// for what was running.
func TestKickAfterStopStartsNothing(t *testing.T) {
	var w workers
	var k kicker
	var runs atomic.Int32
	release := make(chan struct{})
	k.kick(&w, func() { runs.Add(1); <-release })
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a run was in progress")
	default:
	}
	close(release)
	<-stopped
	var late kicker
	late.kick(&w, func() { runs.Add(1) })
	if late.running.Load() {
		t.Fatal("a kick after stop left the kicker marked running")
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d runs, want 1 (the one before stop)", n)
	}
}
