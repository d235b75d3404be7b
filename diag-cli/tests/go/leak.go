package main

import (
	"os"
	"runtime"
	"runtime/pprof"
)

var keep [][]byte

//go:noinline
func leak(n int) {
	for i := 0; i < n; i++ {
		keep = append(keep, make([]byte, 64<<10))
	}
}

func write(path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		panic(err)
	}
	f.Close()
}

// Writes a heap profile to each path given: the first after 100 leaked buffers, the others
// after an even share of 400 more.
func main() {
	runtime.MemProfileRate = 4096
	paths := os.Args[1:]
	leak(100)
	write(paths[0])
	for _, p := range paths[1:] {
		leak(400 / (len(paths) - 1))
		write(p)
	}
}
