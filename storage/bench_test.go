package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkEnqueue measures durable Enqueue throughput with N concurrent
// blocking writers (each waits for its own write, like a publisher held
// until persisted), one 200-byte message to one of 100 sessions each.
func BenchmarkEnqueue(b *testing.B) {
	for _, d := range []Durability{DurabilitySync, DurabilityInterval} {
		for _, writers := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("%s/writers=%d", d, writers), func(b *testing.B) {
				s := benchStore(b, Options{Durability: d, Queue: QueueLimits{MaxMessages: -1, MaxBytes: -1}})
				payload := randomPayload()
				var wg sync.WaitGroup
				per := (b.N + writers - 1) / writers
				b.ResetTimer()
				start := time.Now()
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						id := []string{fmt.Sprintf("s%d", w%100)}
						for range per {
							if _, err := s.Enqueue(bg, id, &Message{Topic: "u/bob/inbox", QoS: 1, Payload: payload}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				el := time.Since(start)
				b.StopTimer()
				st := s.Stats()
				b.ReportMetric(float64(per*writers)/el.Seconds(), "msg/s")
				b.ReportMetric(float64(st.Ops.Load())/float64(max(st.Batches.Load(), 1)), "ops/batch")
			})
		}
	}
}

// BenchmarkEnqueueAsync measures one publisher that keeps up to 64
// EnqueueAsync calls in flight (a hook holding PUBACKs instead of blocking
// its reader) under DurabilitySync.
func BenchmarkEnqueueAsync(b *testing.B) {
	s := benchStore(b, Options{Queue: QueueLimits{MaxMessages: -1, MaxBytes: -1}})
	b.ResetTimer()
	start := time.Now()
	fillQueues(b, s, []string{"a"}, b.N, 64)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	st := s.Stats()
	b.ReportMetric(float64(st.Ops.Load())/float64(max(st.Batches.Load(), 1)), "ops/batch")
}

// BenchmarkReadAck measures draining a queue: Read pages of 100, then
// Ack them (durable), as a reconnecting session does.
func BenchmarkReadAck(b *testing.B) {
	s := benchStore(b, Options{Queue: QueueLimits{MaxMessages: -1, MaxBytes: -1}})
	fillQueues(b, s, []string{"a"}, b.N, 1024)
	b.ResetTimer()
	start := time.Now()
	var after uint64
	read := 0
	for read < b.N {
		es, err := s.Read("a", after, 100)
		if err != nil || len(es) == 0 {
			b.Fatalf("Read: %d entries, %v", len(es), err)
		}
		seqs := seqsOf(es)
		if err := s.Ack(bg, "a", seqs...); err != nil {
			b.Fatal(err)
		}
		after = seqs[len(seqs)-1]
		read += len(es)
	}
	b.ReportMetric(float64(read)/time.Since(start).Seconds(), "msg/s")
}

// BenchmarkQueued opens a store holding n queued messages (100 sessions)
// and reports the open time, and the heap and RSS after reading the head
// of every queue: neither should grow with n.
func BenchmarkQueued(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			if n > 1_000 && testing.Short() {
				b.Skip("1M messages: skipped under -short")
			}
			dir := filledDir(b, n)
			var open time.Duration
			var s *Store
			for i := range b.N {
				t0 := time.Now()
				var err error
				s, err = Open(Options{Dir: dir, Logger: zerolog.Nop(), GCInterval: -1})
				if err != nil {
					b.Fatal(err)
				}
				open += time.Since(t0)
				if i < b.N-1 {
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			total := 0
			for i := range 100 {
				id := fmt.Sprintf("s%02d", i)
				l, err := s.Len(id)
				if err != nil {
					b.Fatal(err)
				}
				total += l
				if es, err := s.Read(id, 0, 100); err != nil || len(es) == 0 {
					b.Fatalf("Read %s: %d, %v", id, len(es), err)
				}
			}
			if total != n {
				b.Fatalf("Len total %d, want %d", total, n)
			}
			debug.FreeOSMemory() // return what the fill freed, so RSS shows what is live
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(open.Microseconds())/1000/float64(b.N), "open-ms")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
			b.ReportMetric(procStatusMiB("RssAnon:"), "rss-anon-MiB")
			b.ReportMetric(procStatusMiB("RssFile:"), "rss-file-MiB")
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

var (
	filledMu   sync.Mutex
	filledDirs = map[int]string{}
)

// filledDir returns a directory holding a closed store with n queued
// messages over 100 sessions, built once per process (benchmarks re-run
// their function with growing b.N).
func filledDir(b *testing.B, n int) string {
	filledMu.Lock()
	defer filledMu.Unlock()
	if d, ok := filledDirs[n]; ok {
		return d
	}
	// STORAGE_BENCH_DIR keeps filled stores across runs, so a second run
	// measures a process that only opened the store, not one that filled it.
	if root := os.Getenv("STORAGE_BENCH_DIR"); root != "" {
		d := fmt.Sprintf("%s/n=%d", root, n)
		if _, err := os.Stat(d + "/filled"); err == nil {
			return d
		}
		fillDir(b, d, n)
		if err := os.WriteFile(d+"/filled", nil, 0o600); err != nil {
			b.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "storage-bench-")
	if err != nil {
		b.Fatal(err)
	}
	fillDir(b, d, n)
	filledDirs[n] = d
	return d
}

func fillDir(b *testing.B, d string, n int) {
	s, err := Open(Options{Dir: d, Logger: zerolog.Nop(), Durability: DurabilityInterval,
		Queue: QueueLimits{MaxMessages: -1, MaxBytes: -1}})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%02d", i)
	}
	t0 := time.Now()
	fillQueues(b, s, ids, n, 1024)
	b.Logf("filled %d messages in %v", n, time.Since(t0))
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

func removeFilledDirs() {
	for _, d := range filledDirs {
		os.RemoveAll(d)
	}
}

// fillQueues enqueues n 200-byte messages round-robin over ids, keeping
// up to window async writes in flight.
func fillQueues(b *testing.B, s *Store, ids []string, n, window int) {
	errs := make(chan error, window)
	r := rand.New(rand.NewPCG(1, 2))
	pending := 0
	for i := range n {
		payload := make([]byte, 200)
		for j := 0; j < len(payload); j += 8 {
			binary.LittleEndian.PutUint64(payload[j:], r.Uint64())
		}
		m := &Message{Topic: "u/bob/inbox", QoS: 1, Payload: payload, ClientID: "alice-phone", User: "alice"}
		if err := s.EnqueueAsync(ids[i%len(ids):i%len(ids)+1], m, func(_ []uint64, err error) { errs <- err }); err != nil {
			b.Fatal(err)
		}
		for pending++; pending >= window; pending-- {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	for ; pending > 0; pending-- {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

func benchStore(b *testing.B, opts Options) *Store {
	opts.Dir = b.TempDir()
	opts.Logger = zerolog.Nop()
	s, err := Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// procStatusMiB reads a kB field of /proc/self/status (0 where
// unavailable). RssAnon is heap and stacks; RssFile is mapped files
// (Badger's tables and logs), page cache the kernel can reclaim.
func procStatusMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return 0
}

// randomPayload returns 200 random bytes. fillQueues makes a new one per
// message so that Badger's Snappy compression does not flatter the
// on-disk figures.
func randomPayload() []byte {
	p := make([]byte, 200)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}
