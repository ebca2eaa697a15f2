package tiles

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Area is a latitude/longitude bounding box in degrees. It may not cross the
// antimeridian (West < East).
type Area struct {
	South float64 `json:"south"`
	West  float64 `json:"west"`
	North float64 `json:"north"`
	East  float64 `json:"east"`
}

// Validate reports a box that is empty, inverted or off the globe.
func (a Area) Validate() error {
	for _, v := range []float64{a.South, a.West, a.North, a.East} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("area has a coordinate that is not a finite number")
		}
	}
	if a.South < -90 || a.North > 90 || a.South >= a.North {
		return fmt.Errorf("area latitudes south=%g north=%g: want -90 <= south < north <= 90", a.South, a.North)
	}
	if a.West < -180 || a.East > 180 || a.West >= a.East {
		return fmt.Errorf("area longitudes west=%g east=%g: want -180 <= west < east <= 180 (boxes across the antimeridian are not supported)", a.West, a.East)
	}
	return nil
}

// Tile returns the box of tile (row, col) when a is cut into rows x cols
// tiles. Row 0 is the northernmost row and col 0 the westernmost column, as
// in an image. Neighbouring tiles share their edges exactly.
func (a Area) Tile(rows, cols, row, col int) Area {
	lat := func(r int) float64 { return a.North - (a.North-a.South)*float64(r)/float64(rows) }
	lon := func(c int) float64 { return a.West + (a.East-a.West)*float64(c)/float64(cols) }
	return Area{South: lat(row + 1), West: lon(col), North: lat(row), East: lon(col + 1)}
}

func (a Area) String() string {
	return fmt.Sprintf("lat %.3f..%.3f, lon %.3f..%.3f", a.South, a.North, a.West, a.East)
}

// The synthetic terrain: MaxElevation bounds it, and the histogram has
// HistogramBins bins of equal width over [0, MaxElevation] metres (the top
// bin includes MaxElevation itself).
const (
	MaxElevation  = 4000.0
	HistogramBins = 16

	octaves       = 6
	baseFrequency = 2.0  // lattice cells per degree of the coarsest octave (~55 km features)
	seaLevel      = 0.36 // noise values below this (about a tenth) flood to 0 m
	landRange     = 0.52 // noise values at seaLevel+landRange would reach MaxElevation
)

// Elevation is the synthetic terrain height in metres at (lat, lon) for seed:
// six octaves of value noise, shaped so that low ground floods to sea level
// (0 m) and peaks are sharper than valleys. It is a pure function of its
// arguments, so neighbouring tiles agree along their shared edge and a tile
// computed twice gives identical results.
func Elevation(seed int64, lat, lon float64) float64 {
	var sum, norm float64
	freq, amp := baseFrequency, 1.0
	for o := range octaves {
		s := uint64(seed) + uint64(o+1)*0x9E3779B97F4A7C15
		sum += amp * valueNoise(s, lon*freq, lat*freq)
		norm += amp
		freq *= 2
		amp /= 2
	}
	h := (sum/norm - seaLevel) / landRange
	h = min(max(h, 0), 1)
	return MaxElevation * h * math.Sqrt(h)
}

// valueNoise interpolates pseudo-random lattice values smoothly: a number in
// [0, 1) that changes continuously with x and y.
func valueNoise(seed uint64, x, y float64) float64 {
	x0, y0 := math.Floor(x), math.Floor(y)
	ix, iy := int64(x0), int64(y0)
	u, v := fade(x-x0), fade(y-y0)
	a := lattice(seed, ix, iy)
	b := lattice(seed, ix+1, iy)
	c := lattice(seed, ix, iy+1)
	d := lattice(seed, ix+1, iy+1)
	return lerp(lerp(a, b, u), lerp(c, d, u), v)
}

func fade(t float64) float64       { return t * t * (3 - 2*t) }
func lerp(a, b, t float64) float64 { return a + (b-a)*t }
func lattice(seed uint64, x, y int64) float64 {
	h := splitmix64(seed ^ uint64(x)*0xBF58476D1CE4E5B9 ^ uint64(y)*0x94D049BB133111EB)
	return float64(h>>11) / (1 << 53)
}

func splitmix64(z uint64) uint64 {
	z += 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Point is a location in degrees.
type Point struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// Stats summarises the elevation of a set of pixels. Two Stats of disjoint
// pixel sets combine exactly (up to rounding) with Merge.
type Stats struct {
	Pixels    int64   `json:"pixels"`
	Mean      float64 `json:"mean_m"`
	StdDev    float64 `json:"stddev_m"` // population standard deviation
	Min       float64 `json:"min_m"`
	Max       float64 `json:"max_m"`
	Peak      Point   `json:"peak"`             // where Max is (the first such pixel)
	SeaPixels int64   `json:"sea_level_pixels"` // pixels at exactly 0 m
	Histogram []int64 `json:"histogram"`        // HistogramBins counts; bin i covers [i, i+1) * MaxElevation/HistogramBins metres
}

// BinWidth is the width of one histogram bin in metres.
const BinWidth = MaxElevation / HistogramBins

// ComputeStats samples the terrain of area on a size x size pixel grid (pixel
// centres, row 0 north) and returns its statistics. It stops early with ctx's
// error when ctx is canceled.
func ComputeStats(ctx context.Context, area Area, size int, seed int64) (Stats, error) {
	if size < 1 {
		return Stats{}, fmt.Errorf("tile size %d: want at least 1 pixel", size)
	}
	s := Stats{Min: math.Inf(1), Max: math.Inf(-1), Histogram: make([]int64, HistogramBins)}
	dLat := (area.North - area.South) / float64(size)
	dLon := (area.East - area.West) / float64(size)
	var m2 float64 // sum of squared deviations from the running mean (Welford)
	for i := range size {
		if err := ctx.Err(); err != nil {
			return Stats{}, err
		}
		lat := area.North - (float64(i)+0.5)*dLat
		for j := range size {
			lon := area.West + (float64(j)+0.5)*dLon
			e := Elevation(seed, lat, lon)
			s.Pixels++
			d := e - s.Mean
			s.Mean += d / float64(s.Pixels)
			m2 += d * (e - s.Mean)
			if e < s.Min {
				s.Min = e
			}
			if e > s.Max {
				s.Max, s.Peak = e, Point{Lat: lat, Lon: lon}
			}
			if e == 0 {
				s.SeaPixels++
			}
			s.Histogram[min(int(e/BinWidth), HistogramBins-1)]++
		}
	}
	s.StdDev = math.Sqrt(m2 / float64(s.Pixels))
	return s, nil
}

// Merge folds o into s as if both pixel sets had been measured together. The
// mean and standard deviation combine with Chan et al.'s parallel formula; on
// a tie for the highest pixel, s keeps its peak.
func (s *Stats) Merge(o Stats) {
	if o.Pixels == 0 {
		return
	}
	if s.Pixels == 0 {
		*s = o
		s.Histogram = append([]int64(nil), o.Histogram...)
		return
	}
	n := s.Pixels + o.Pixels
	na, nb := float64(s.Pixels), float64(o.Pixels)
	delta := o.Mean - s.Mean
	m2 := s.StdDev*s.StdDev*na + o.StdDev*o.StdDev*nb + delta*delta*na*nb/float64(n)
	s.Mean += delta * nb / float64(n)
	s.StdDev = math.Sqrt(m2 / float64(n))
	s.Pixels = n
	s.Min = min(s.Min, o.Min)
	if o.Max > s.Max {
		s.Max, s.Peak = o.Max, o.Peak
	}
	s.SeaPixels += o.SeaPixels
	if len(s.Histogram) < len(o.Histogram) {
		s.Histogram = append(s.Histogram, make([]int64, len(o.Histogram)-len(s.Histogram))...)
	}
	for i, c := range o.Histogram {
		s.Histogram[i] += c
	}
}
