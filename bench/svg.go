package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// BarGroup is one figure in a bar chart: one bar per series.
type BarGroup struct {
	// Label names the figure (e.g. "recv_per_s").
	Label string
	// Values holds one value per series; NaN draws no bar.
	Values []float64
}

// seriesColors are colour-blind-safe (Okabe-Ito) fills, one per series.
var seriesColors = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7"}

// Chart geometry in SVG user units.
const (
	chartGroupWidth = 150
	chartBarWidth   = 44
	chartPlotHeight = 200
	chartTop        = 60
	chartLeft       = 20
)

// WriteBarChart writes a grouped bar chart as a standalone SVG. Figures
// have different units, so each group is scaled to its own largest value and
// every bar carries its number: the chart shows which broker leads on each
// figure and by how much, not absolute magnitudes across figures.
func WriteBarChart(w io.Writer, title string, series []string, groups []BarGroup) error {
	bw := bufio.NewWriter(w)
	width := chartLeft*2 + max(len(groups), 1)*chartGroupWidth
	height := chartTop + chartPlotHeight + 60
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(bw, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", chartLeft, html.EscapeString(title))
	for i, s := range series {
		x := chartLeft + i*110
		fmt.Fprintf(bw, `<rect x="%d" y="30" width="12" height="12" fill="%s"/>`, x, seriesColors[i%len(seriesColors)])
		fmt.Fprintf(bw, `<text x="%d" y="40">%s</text>`+"\n", x+16, html.EscapeString(s))
	}
	base := chartTop + chartPlotHeight
	for g, grp := range groups {
		gx := chartLeft + g*chartGroupWidth
		top := 0.0
		for _, v := range grp.Values {
			if !math.IsNaN(v) && math.Abs(v) > top {
				top = math.Abs(v)
			}
		}
		for i, v := range grp.Values {
			if math.IsNaN(v) {
				continue
			}
			h := 0.0
			if top > 0 {
				h = math.Abs(v) / top * (chartPlotHeight - 20)
			}
			x := gx + (chartGroupWidth-len(grp.Values)*(chartBarWidth+6)+6)/2 + i*(chartBarWidth+6)
			fmt.Fprintf(bw, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"/>`, x, float64(base)-h, chartBarWidth, h, seriesColors[i%len(seriesColors)])
			fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+chartBarWidth/2, float64(base)-h-4, html.EscapeString(formatFigure(v)))
		}
		fmt.Fprintf(bw, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", gx+chartGroupWidth/2, base+18, html.EscapeString(grp.Label))
	}
	fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", chartLeft, base, width-chartLeft, base)
	fmt.Fprintln(bw, `</svg>`)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write svg %q: %w", title, err)
	}
	return nil
}

// formatFigure prints a figure compactly: integers and large values without
// decimals (a rate of 4.25e+03 reads worse than 4250), small fractions with
// three significant digits.
func formatFigure(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 100 && math.Abs(v) < 1e15, v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}
