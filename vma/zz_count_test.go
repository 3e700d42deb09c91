package vma_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

var fuzzCount atomic.Int64
var fuzzStart = time.Now()

func countExec(n int) {
	c := fuzzCount.Add(1)
	if c%2000 == 0 {
		f, _ := os.OpenFile(fmt.Sprintf("/tmp/fuzzcount.%d", os.Getpid()), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		fmt.Fprintf(f, "%v %d execs, last len %d\n", time.Since(fuzzStart).Round(time.Millisecond), c, n)
		f.Close()
	}
}
