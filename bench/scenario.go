package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrUnknownScenario is returned by Run for a name not in Scenarios.
var ErrUnknownScenario = errors.New("unknown scenario")

// ErrNotSupported is returned by scenarios that cannot run yet.
var ErrNotSupported = errors.New("not supported yet")

// Scenario is one load pattern.
type Scenario struct {
	// Name is what `mqhub bench NAME` takes.
	Name string
	// Summary is a one-line description for help output.
	Summary string
	// Key lists the figures Compare tabulates and plots, most telling
	// first; Result.Figures holds more.
	Key []string
	// Defaults fills the scenario's zero-valued options.
	Defaults func(*Options)
	// run measures and returns the figures.
	run func(ctx context.Context, o Options) (map[string]float64, error)
}

// Scenarios returns every scenario in a stable order.
func Scenarios() []Scenario {
	return []Scenario{
		faninScenario(0),
		faninScenario(1),
		p2pScenario(),
		fanoutScenario(0),
		fanoutScenario(1),
		connsScenario(),
		offlineScenario(),
		receiptsScenario(),
	}
}

// Lookup returns the scenario called name.
func Lookup(name string) (Scenario, error) {
	i := slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return Scenario{}, fmt.Errorf("%w %q", ErrUnknownScenario, name)
	}
	return Scenarios()[i], nil
}

// Run runs the scenario called name against o.Target and returns its
// result. It never runs longer than o.Timeout (after defaults).
func Run(ctx context.Context, name string, o Options) (*Result, error) {
	sc, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if sc.Defaults != nil {
		sc.Defaults(&o)
	}
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	res := &Result{Scenario: name, Target: o.Target, Start: time.Now(), Params: o.params()}
	var rssBefore int64
	if o.PID > 0 {
		if rssBefore, err = ReadRSS(o.PID); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	figs, err := sc.run(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s against %s: %w", name, o.Target, err)
	}
	if o.PID > 0 {
		after, err := ReadRSS(o.PID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		figs["rss_before_kb"] = float64(rssBefore)
		figs["rss_after_kb"] = float64(after)
	}
	res.Figures = figs
	res.ElapsedS = time.Since(res.Start).Seconds()
	return res, nil
}

// params returns the options that shape a run, for the result record.
func (o Options) params() map[string]any {
	return map[string]any{
		"clients":      o.Clients,
		"rate":         o.Rate,
		"duration_s":   o.Duration.Seconds(),
		"count":        o.Count,
		"payload_size": o.PayloadSize,
		"qos":          o.QoS,
		"inflight":     o.Inflight,
		"max_backlog":  o.MaxBacklog,
		"hold_s":       o.Hold.Seconds(),
		"keepalive_s":  o.KeepAlive.Seconds(),
		"pid":          o.PID,
	}
}
