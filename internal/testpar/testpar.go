// Package testpar sets how many parallel tests a test binary runs at
// once, for packages whose tests mostly wait (on processes they start,
// on servers, on lock back-offs) rather than use this process's CPU. Its
// one job: go test's default -parallel is GOMAXPROCS, 2 on a small
// machine, so there a test that waits seconds holds one of two slots
// while the CPU idles.
package testpar

import (
	"flag"
	"runtime"
	"strconv"
)

// Waiting parses the test flags and, unless -parallel was given on the
// command line (which is left alone), sets it to three times GOMAXPROCS,
// at least 4. It returns the names of the flags that were given. Call it
// from TestMain before m.Run.
func Waiting() map[string]bool {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["test.parallel"] {
		flag.Set("test.parallel", strconv.Itoa(max(3*runtime.GOMAXPROCS(0), 4)))
	}
	return set
}
