// Package browsertest tests the status page (package status) in a real
// headless Chromium driven by chromedp. It is a module of its own, so that
// the core library's users do not pull chromedp in. CI runs it after
// installing Debian's chromium (.ci/run).
package browsertest
