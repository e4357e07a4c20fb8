# bench/sizing.sh: acknowledgement latency percentiles against the offered rate.
# gnuplot -e "datafile='F'; outfile='O.png'; target=50" latency.gp   (F: offered p50 p95 p99 max, tab-separated)
set terminal pngcairo size 960,600 noenhanced font ",10"
set output outfile
set title "crm-ingest serve: acknowledgement latency vs offered rate (open loop)"
set xlabel "offered events/s"
set ylabel "latency (ms, log scale)"
set logscale y
set grid
set key top left
set datafile separator "\t"
plot datafile using 1:2 with linespoints title "p50", \
     datafile using 1:3 with linespoints title "p95", \
     datafile using 1:4 with linespoints lw 2 title "p99", \
     datafile using 1:5 with linespoints title "max", \
     target with lines dashtype 2 lc rgb "red" title sprintf("p99 target %g ms", target)
