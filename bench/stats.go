package bench

import (
	"math"
	"slices"
)

// Median returns the median of xs (the mean of the two middle values for an
// even count) and NaN for an empty slice. Compare reports medians rather
// than means because one disturbed round on a shared 2-core machine should
// not move the figure.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Ratio returns a/b and whether it is meaningful: false when either value is
// NaN or b is zero (0/0 and x/0 say nothing about which broker is better).
func Ratio(a, b float64) (float64, bool) {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return 0, false
	}
	return a / b, true
}
