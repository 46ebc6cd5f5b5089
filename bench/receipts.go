package bench

import (
	"context"
	"fmt"
)

// receiptsScenario will measure the send -> sent -> delivered -> read
// round trip of mqhub's messaging flow (DESIGN.md, "The message flow"). It
// needs the receipts hook, which a plain MQTT broker does not have, so it
// refuses to run until that flow exists.
func receiptsScenario() Scenario {
	return Scenario{
		Name:    "receipts",
		Summary: "delivered/read receipt round trip (not supported yet: needs the messaging flow)",
		Defaults: func(o *Options) {
			if o.Clients == 0 {
				o.Clients = 1
			}
			if o.Duration == 0 && o.Count == 0 {
				o.Duration = defaultDuration
			}
		},
		run: func(context.Context, Options) (map[string]float64, error) {
			return nil, fmt.Errorf("%w: needs the messaging flow (receipts hook on u/{user}/receipts)", ErrNotSupported)
		},
	}
}
