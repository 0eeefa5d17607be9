package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// The picture of a run (compare --svg FILE): for every contender, its p50
// and p99 over the C floor's (pinned phase) and its aggregate throughput
// over the C floor's two pairs (unpinned phase), as bars from the floor's
// line on a log scale, each with its spread over rounds (min to max) as a
// whisker. Hand-written SVG: it is a picture, not an interface.

const (
	svgWidth  = 960
	svgLabelW = 300 // left column: contender labels
	svgRight  = 70  // right margin: the median's figure
	svgRowH   = 16
	svgMinLog = -4.0 // the axis spans 2^-4 ..
	svgMaxLog = 8.0  // .. 2^8 times the floor
)

// svgX maps a ratio to its x on the log axis, clamped to the axis.
func svgX(r float64) float64 {
	l := math.Log2(max(r, math.Exp2(svgMinLog)))
	l = min(l, svgMaxLog)
	return svgLabelW + (l-svgMinLog)/(svgMaxLog-svgMinLog)*(svgWidth-svgLabelW-svgRight)
}

type svgBar struct {
	label  string
	sp     Spread
	colour string
}

// svgPanel draws one titled panel of bars starting at y and returns the y
// below it.
func svgPanel(b *strings.Builder, y float64, title string, groups [][]svgBar) float64 {
	fmt.Fprintf(b, "<text x=\"10\" y=\"%.0f\" font-weight=\"bold\">%s</text>\n", y+14, html.EscapeString(title))
	y += 24
	top := y
	for _, g := range groups {
		for _, bar := range g {
			svgBarRow(b, y, bar)
			y += svgRowH
		}
		y += 6
	}
	// The axis: ticks at powers of two, the floor's line at 1.
	for l := svgMinLog; l <= svgMaxLog; l++ {
		x := svgX(math.Exp2(l))
		stroke := "#ddd"
		if l == 0 {
			stroke = "#000"
		}
		fmt.Fprintf(b, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\"/>\n", x, top-4, x, y, stroke)
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#555\">%s</text>\n", x, y+12, fmtRatio(math.Exp2(l)))
	}
	fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#555\">× the C floor (log scale); whisker: min to max over rounds</text>\n",
		svgX(1), y+26)
	return y + 40
}

func svgBarRow(b *strings.Builder, y float64, bar svgBar) {
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%.0f\" text-anchor=\"end\">%s</text>\n", svgLabelW-8, y+11, html.EscapeString(bar.label))
	if bar.sp.Rounds == 0 {
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%.0f\" fill=\"#999\">not measured</text>\n", svgX(1)+4, y+11)
		return
	}
	x0, x1 := svgX(1), svgX(bar.sp.Median)
	fmt.Fprintf(b, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", min(x0, x1), y+2, math.Abs(x1-x0), svgRowH-4, bar.colour)
	lo, hi, mid := svgX(bar.sp.Min), svgX(bar.sp.Max), y+svgRowH/2
	fmt.Fprintf(b, "<path d=\"M%.1f %.0fV%.0fM%.1f %.1fH%.1fM%.1f %.0fV%.0f\" stroke=\"#222\" fill=\"none\"/>\n",
		lo, y+3, y+svgRowH-3, lo, mid, hi, hi, y+3, y+svgRowH-3)
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%.0f\" fill=\"#333\">%s</text>\n", svgWidth-svgRight+6, y+11, fmtRatio(bar.sp.Median))
}

func fmtRatio(r float64) string {
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2f×", r)
	default:
		return fmt.Sprintf("%.3f×", r)
	}
}

// writeSVG draws rep.
func writeSVG(w io.Writer, rep *Report) error {
	var lat, agg [][]svgBar
	for _, r := range rep.Results.Contenders {
		if r.Name == "c_floor" {
			continue
		}
		lat = append(lat, []svgBar{
			{label: r.Label + ", p50", sp: r.P50VsCSpread, colour: "#3a7bd5"},
			{label: "p99", sp: r.P99VsCSpread, colour: "#9bbcea"},
		})
		if r.AggVsCSpread.Rounds > 0 {
			agg = append(agg, []svgBar{{label: r.Label, sp: r.AggVsCSpread, colour: "#2f9e5a"}})
		}
	}
	var b strings.Builder
	cfg := rep.Results.Config
	head := fmt.Sprintf("bench/cmd/compare: %v rounds × %v ms, %v CPUs, %v; C socketpair floor p50 %.2f µs (pinned)",
		cfg["rounds"], cfg["duration_ms"], rep.Results.Machine["cpus"], rep.Results.Machine["go"], rep.CFloorP50US)
	fmt.Fprintf(&b, "<text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", html.EscapeString(head))
	y := svgPanel(&b, 28, "Null call latency, both processes on one CPU: p50 and p99 over the C floor's (shorter is faster)", lat)
	y = svgPanel(&b, y, "Aggregate calls/s, 16 callers on 2 servers, unpinned, over the C floor with 2 pairs (longer is faster)", agg)
	if n := len(rep.FlaggedRounds); n > 0 {
		fmt.Fprintf(&b, "<text x=\"10\" y=\"%.0f\" fill=\"#b00\">%d round(s) flagged: a floor moved by more than 2x (see flagged_rounds)</text>\n", y, n)
		y += 20
	}
	_, err := fmt.Fprintf(w, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n%s</svg>\n",
		svgWidth, y, svgWidth, y, b.String())
	return err
}
