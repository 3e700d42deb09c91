package main

import (
	"embed"
	"strings"
)

// The long help of each command (the DESCRIPTION of its --help) is a text
// file of help/, named after the command: prose kept apart from the
// command definitions, and edited as prose.
//
//go:embed help/*.txt
var helpFiles embed.FS

// help returns help/NAME.txt without its final newline, with each
// {placeholder} of kv (pairs: placeholder, value) replaced.
func help(name string, kv ...string) string {
	b, err := helpFiles.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic(err) // a file missing from the build, not an input: every --help test fails on it
	}
	return strings.NewReplacer(kv...).Replace(strings.TrimSuffix(string(b), "\n"))
}
