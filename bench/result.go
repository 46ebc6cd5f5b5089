package bench

import "time"

// Result is the outcome of one scenario run. It marshals to the single JSON
// line `mqhub bench SCENARIO` prints.
type Result struct {
	// Scenario is the scenario's name.
	Scenario string `json:"scenario"`
	// Target is the broker address the run used.
	Target string `json:"target"`
	// Start is when the run began (wall clock).
	Start time.Time `json:"start"`
	// ElapsedS is the run's total wall time in seconds, setup included.
	ElapsedS float64 `json:"elapsed_s"`
	// Params are the effective options after defaults.
	Params map[string]any `json:"params"`
	// Figures are the measurements. Names end in their unit: _per_s,
	// _us, _kb, _s; bare names are counts.
	Figures map[string]float64 `json:"figures"`
}
