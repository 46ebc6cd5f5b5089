package bench

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressInterval is how often the bar is redrawn. The bar is driven by a
// poller reading a counter rather than by every message, because hot paths
// run at 100k+ msg/s and the bar takes a lock per update.
const progressInterval = 200 * time.Millisecond

// progress draws a progress bar for one phase of a scenario. A nil
// *progress (no writer configured) does nothing.
type progress struct {
	bar  *progressbar.ProgressBar
	stop chan struct{}
	done sync.WaitGroup
}

// startProgress shows a bar titled desc on w that polls current until total
// is reached or stop is called. It returns nil when w is nil.
func startProgress(w io.Writer, desc string, total int64, current func() int64) *progress {
	if w == nil {
		return nil
	}
	p := &progress{
		bar: progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(progressInterval),
			progressbar.OptionClearOnFinish(),
		),
		stop: make(chan struct{}),
	}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				_ = p.bar.Set64(min(current(), total))
			}
		}
	}()
	return p
}

// finish stops polling and clears the bar.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
	_ = p.bar.Finish()
}
