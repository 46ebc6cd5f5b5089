package offline

import (
	"sync"
	"sync/atomic"
)

// kicker runs a function on a goroutine of its own whenever kicked, again
// as long as kicks keep coming, and not at all when idle: an idle session
// or publisher costs no goroutine.
//
// A kick always sets again before looking at running, and the runner
// always looks at again after clearing running, so no kick is ever lost
// between the last run and the goroutine's exit.
type kicker struct {
	running atomic.Bool
	again   atomic.Bool
}

func (k *kicker) kick(w *workers, fn func()) {
	k.again.Store(true)
	if k.running.CompareAndSwap(false, true) {
		if !w.start() {
			k.running.Store(false)
			return // the hook stopped: nothing runs any more
		}
		go k.run(w, fn)
	}
}

func (k *kicker) run(w *workers, fn func()) {
	defer w.done()
	for {
		for k.again.Swap(false) {
			fn()
		}
		k.running.Store(false)
		if !k.again.Load() || !k.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// workers counts the goroutines the hook starts, and starts none once it
// stopped: a kick can come from the store's commit goroutine (a write
// completing) after OnStopped waited for the others, and must not start a
// goroutine that outlives the hook.
type workers struct {
	mu      sync.Mutex
	wg      sync.WaitGroup
	stopped bool
}

// start counts a new goroutine, or reports false once stopped.
func (w *workers) start() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	w.wg.Add(1)
	return true
}

func (w *workers) done() { w.wg.Done() }

// stop refuses new goroutines and waits for the running ones.
func (w *workers) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wg.Wait()
}
