//go:build race

package account

// raceSlowdown widens the page time budget under the race detector, which
// slows this code several times over; the budget itself holds without it.
const raceSlowdown = 10
