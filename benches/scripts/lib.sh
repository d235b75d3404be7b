# Shared by layer_overhead.sh and service_overhead.sh (sourced, not run).

# PIN=1 (the default): servers on CPU 0 with one tokio worker, wrk (and any client loop) on
# CPU 1. Unpinned, how the kernel spreads wrk and the workers, and which worker the
# connections land on, moves throughput by up to +-10 % between identical servers on these
# 2-core machines. PIN=0: unpinned, the runtime's default workers. Sets SERVER_PIN, WRK_PIN.
pin_setup() {
  if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN="taskset -c 0"; WRK_PIN="taskset -c 1"; export TOKIO_WORKER_THREADS=1
  else
    SERVER_PIN=""; WRK_PIN=""
  fi
}

# User+system CPU ticks used so far by process $1.
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# Reads `wrk --latency` output on stdin; $1 = the server's CPU ticks over the run.
# Prints "rps p99_ms cpu_us_per_request".
wrk_summary() {
  awk -v ticks="$1" -v hz="$TICK" '
    / requests in / {n=$1}
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; p99=v}
    END {printf "%s %s %.2f\n", rps, p99, 1e6 * ticks / hz / n}'
}

# The median of the arguments (numbers).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# One line naming the machine.
machine() { echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"; }
