# SPDX-License-Identifier: MIT
# plot.gp: run.sh's plot. Variables: out (PNG), raw (run.sh's raw/ dir), workloads (names,
# space-separated), title. One panel per workload with the latency CDF of faulting touches
# (kernel zram, memext), and one with touches/s per workload and configuration.
n = words(workloads) + 1
cols = 3
rows = int((n + cols - 1) / cols)
set terminal pngcairo size 1500, 430 * rows font "sans,10"
set output out
set multiplot layout rows, cols title title font "sans,12"

set logscale x
set xrange [0.5:100000]
set yrange [0:1]
set xlabel "fault latency (µs)"
set ylabel "fraction of faulting touches"
set grid
set key bottom right
do for [i = 1:words(workloads)] {
	w = word(workloads, i)
	set title w
	plot raw . "/" . w . ".kernel.cdf" using 1:2 with lines lw 2 lc rgb "#d62728" title "kernel zram", \
	     raw . "/" . w . ".memext.cdf" using 1:2 with lines lw 2 lc rgb "#1f77b4" title "memext"
}

unset logscale x
set autoscale x
set logscale y
set yrange [1000:3e7]
set title "throughput"
set xlabel ""
set ylabel "touches / s (log)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -30
set key top left vertical samplen 2
plot raw . "/bars.dat" using 2:xtic(1) lc rgb "#7f7f7f" title "native", \
     "" using 3 lc rgb "#d62728" title "kernel zram", \
     "" using 4 lc rgb "#1f77b4" title "memext"
unset multiplot
