module github.com/bulkhead-go/bulkhead

go 1.26.8

require (
	github.com/fxamacker/cbor/v2 v2.9.6
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.49.0
)

require github.com/x448/float16 v0.8.4 // indirect
