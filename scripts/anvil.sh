# Sourced by the demo and the benchmarks: a free loopback port, and anvil started on
# one with the settings the workload generator is tuned for.
#   free_port                 prints a port that was free a moment ago on 127.0.0.1
#   start_anvil DIR           starts anvil (log in DIR/anvil.log), waits until it listens;
#                             sets anvil_port and anvil_pid
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_anvil() {
  anvil_port=$(free_port)
  contracts/node_modules/.bin/anvil --host 127.0.0.1 --port "$anvil_port" --gas-limit 10000000000 \
    --prune-history 256 >"$1/anvil.log" 2>&1 &
  anvil_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$anvil_port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "anvil did not start; see $1/anvil.log" >&2
  return 1
}
