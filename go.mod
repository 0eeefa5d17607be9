module github.com/bulkhead-go/bulkhead

go 1.26.8
