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

func (k *kicker) kick(wg *sync.WaitGroup, fn func()) {
	k.again.Store(true)
	if k.running.CompareAndSwap(false, true) {
		wg.Add(1)
		go k.run(wg, fn)
	}
}

func (k *kicker) run(wg *sync.WaitGroup, fn func()) {
	defer wg.Done()
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
