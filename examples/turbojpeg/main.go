// Command turbojpeg reads JPEG headers with libjpeg-turbo's TurboJPEG API in
// bulkhead workers that `bulkhead gen` generated from turbojpeg.h (tjbh/,
// from turbojpeg.toml): a handle made and freed inside the worker, a buffer
// in, four out-pointers back. It checks each answer against the image that Go's
// image/jpeg encoded, and that a buffer that is no JPEG is TurboJPEG's own
// error. It exits 0 when every check holds.
//
//	apt-get install libturbojpeg0-dev
//	go run ./examples/turbojpeg
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bulkhead-go/bulkhead"
	"github.com/bulkhead-go/bulkhead/examples/turbojpeg/tjbh"
)

// TurboJPEG's constants (turbojpeg.h): subsampling and colour spaces.
const (
	tjsamp420  = 2
	tjsampGray = 3
	tjcsYCbCr  = 1
	tjcsGray   = 2
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "turbojpeg:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	bin, err := tjbh.Worker(ctx)
	if err != nil {
		return fmt.Errorf("building the worker (is libturbojpeg0-dev installed?): %w", err)
	}
	pool, err := bulkhead.New(ctx, bulkhead.Config{Command: bin, Workers: 1})
	if err != nil {
		return err
	}
	defer pool.Close(context.Background())
	tests := []struct {
		img             image.Image
		subsamp, colors int32
	}{
		{image.NewRGBA(image.Rect(0, 0, 37, 21)), tjsamp420, tjcsYCbCr},
		{image.NewRGBA(image.Rect(0, 0, 640, 480)), tjsamp420, tjcsYCbCr},
		{image.NewGray(image.Rect(0, 0, 1, 999)), tjsampGray, tjcsGray},
	}
	for _, tt := range tests {
		if rgba, ok := tt.img.(*image.RGBA); ok {
			rgba.Set(3, 3, color.RGBA{200, 10, 10, 255})
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, tt.img, nil); err != nil {
			return err
		}
		h, err := tjbh.DecompressHeader(ctx, pool, b.Bytes())
		if err != nil {
			return fmt.Errorf("tjDecompressHeader3: %w", err)
		}
		size := tt.img.Bounds().Size()
		if int(h.Width) != size.X || int(h.Height) != size.Y || h.JpegSubsamp != tt.subsamp || h.JpegColorspace != tt.colors {
			return fmt.Errorf("header %+v; Go encoded %dx%d, subsampling %d, colour space %d",
				h, size.X, size.Y, tt.subsamp, tt.colors)
		}
		fmt.Fprintf(out, "ok  %4dx%-4d subsampling %d, colour space %d: as Go encoded it\n", h.Width, h.Height, h.JpegSubsamp, h.JpegColorspace)
	}
	_, err = tjbh.DecompressHeader(ctx, pool, []byte("not a JPEG at all"))
	var re *bulkhead.RemoteError
	// The message ends with TurboJPEG's words (the annotation's error,
	// tjGetErrorStr2 on the call's handle).
	if want := "returned -1: Not a JPEG file: starts with 0x6e 0x6f"; !errors.As(err, &re) || re.Code != bulkhead.CodeApplication ||
		!strings.HasSuffix(re.Message, want) {
		return fmt.Errorf("a buffer that is no JPEG: %v; want TurboJPEG's error as a *bulkhead.RemoteError ending %q", err, want)
	}
	fmt.Fprintf(out, "ok  a buffer that is no JPEG is TurboJPEG's error, as a *bulkhead.RemoteError: %s\n", re.Message)
	fmt.Fprintln(out, "every check holds")
	return nil
}
