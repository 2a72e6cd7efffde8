//go:build !race

package console_test

// raceSlowdown is 1 without the race detector: the page budget applies as is.
const raceSlowdown = 1
