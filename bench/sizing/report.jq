# bench/sizing.sh: the steps of a run -> report.json (saturation point, psql \copy ratio, sizing table).
def r(x; n): if x == null then null else (x * pow(10; n) | round) / pow(10; n) end;
def ceil_int: if . == floor then . else floor + 1 end;
def passes: .latency_ms.p99 <= $p99_target and .events_lost == 0 and .errors == 0 and (.non_2xx | length) == 0
            and .requests_ok >= 0.98 * .requests_scheduled;
def drain_slack: ([2, $duration / 4] | max);
def sustained: passes and .drained and .drain_lag_s <= drain_slack;

($steps | sort_by(.offered_events_per_s)
        | map(. + {passes: passes, sustained: sustained})) as $s
| ($s | map(select(.passes)) | last) as $ack
| ($s | map(select(.sustained)) | last) as $sus
| ($copy.rows_per_s) as $copy_rate
| def point($x): if $x == null then null else {
      offered_events_per_s: $x.offered_events_per_s, achieved_events_per_s: $x.achieved_events_per_s,
      p99_ms: $x.latency_ms.p99, stored_rows_per_s: $x.stored_rows_per_s,
      ratio_to_copy: (if $copy_rate then r($x.offered_events_per_s / $copy_rate; 3) else null end),
      stored_ratio_to_copy: (if $copy_rate then r($x.stored_rows_per_s / $copy_rate; 3) else null end)} end;
# Storage per event over every step (more rows, steadier than one step).
([$s[] | select(.stored_rows > 0)]) as $stored_steps
| ($stored_steps | map(.stored_rows) | add // 0) as $rows
| (if $rows > 0 then ($stored_steps | map(.disk.table_bytes) | add) / $rows else null end) as $tbpe
| (if $rows > 0 then ($stored_steps | map(.disk.wal_bytes) | add) / $rows else null end) as $wbpe
# One node.
| (($sus.offered_events_per_s) // 0) as $s1
| ($s1 * $headroom) as $plan1
| ($sus.cpu.crm_ingest_cpu_us_per_event // null) as $cpe_ing
| ($sus.cpu.postgres_cpu_us_per_event // null) as $cpe_pg
# Three nodes (Patroni): measured when the run went through the cluster; else modelled from this run:
# the single-node rate scaled by the CPU the primary is relieved of (it runs all of PostgreSQL, +10% for
# WAL senders, and a third of crm-ingest).
| (if $layout == "patroni" then {events_per_s: $s1, method: "measured through HAProxy against the local 3-node cluster (all three nodes on this one machine: a lower bound)"}
   elif $s1 > 0 and $cpe_pg != null and $cpe_ing != null then
     ($s1 * ($cpe_pg + $cpe_ing) / ($cpe_pg * 1.1 + $cpe_ing / 3)) as $cpu_cap
     | ([$cpu_cap, 3 * $s1] + (if $copy_rate then [$copy_rate] else [] end) | min) as $cap
     | {events_per_s: ($cap | floor), cpu_model_events_per_s: ($cpu_cap | floor),
        method: "modelled from the single-node run: min(single-node rate x (PostgreSQL + crm-ingest CPU per event) / (PostgreSQL CPU per event x 1.1 + crm-ingest CPU per event / 3), 3 x single-node rate, psql \\copy ceiling): the primary keeps all PostgreSQL work (+10 % for WAL senders) and a third of the HTTP edge; synchronous replication's cost is not in it (--patroni measures it)"}
   else {events_per_s: $s1, method: "no CPU figures for PostgreSQL (not on this machine): taken equal to the single-node rate"} end) as $three
| ($three.events_per_s * $headroom) as $plan3
| {
    generated_at: $generated_at, command: $command,
    machine: {cpus: $nproc, cpu_model: $cpu_model, memory_gib: r($mem_kb / 1048576; 1),
              load_average_before: $load_before, load_average_after: $load_after,
              caps: {cpus: $cpus, memory: $memory, postgres_capped: $pg_capped}, postgres_local: $pg_local},
    config: {layout: $layout, postgres: $pg_version, mix: $mix, canonical_batch: $canonical_batch,
             sendgrid_batch: $sendgrid_batch, duplicate_share: $duplicates, invalid_share: $invalid,
             mean_events_per_request: $events_per_request, step_duration_s: $duration,
             p99_target_ms: $p99_target, connections: $connections, io_threads: $io_threads, writers: $writers},
    steps: $s,
    copy: $copy,
    saturation: {
      rule: "highest offered rate with p99 <= \($p99_target) ms, no event lost, no error or non-2xx, >= 98% of the scheduled requests acknowledged; sustained: also drained into PostgreSQL within \(drain_slack) s after the load",
      acknowledged: point($ack), sustained: point($sus),
      reached: ($s | length > 0 and (last | .passes | not))
    },
    sizing: {
      headroom: $headroom, peak_factor: $peak_factor, node_cores: $node_cores,
      retention_months: $retention_months, daily_volume: $daily_volume, node_disk_gb: $node_disk_gb,
      table_bytes_per_event: r($tbpe; 1), wal_bytes_per_event: r($wbpe; 1),
      single_node: {saturation_events_per_s: $s1, planned_events_per_s: ($plan1 | floor),
                    planned_events_per_day: ($plan1 * 86400 | floor)},
      patroni_3_node: {saturation_events_per_s: $three.events_per_s, planned_events_per_s: ($plan3 | floor),
                       planned_events_per_day: ($plan3 * 86400 | floor),
                       planned_events_per_day_per_node: ($plan3 * 86400 / 3 | floor), method: $three.method,
                       cpu_model_events_per_s: $three.cpu_model_events_per_s},
      volumes: [([$daily_volume] + $targets | unique | sort)[] as $v
        | ($v / 86400 * $peak_factor) as $peak
        | ($v * 30.44 * ($tbpe // 0)) as $month
        | (if $plan3 > 0 then ($peak / $plan3 | ceil_int) else null end) as $clusters
        | {events_per_day: $v, mean_events_per_s: r($v / 86400; 1), peak_events_per_s: r($peak; 1),
           single_nodes: (if $plan1 > 0 then ($peak / $plan1 | ceil_int) else null end),
           patroni_clusters: $clusters, patroni_nodes: (if $clusters then 3 * $clusters else null end),
           storage_gib_per_month: r($month / 1073741824; 1),
           storage_gib_retained: r($month * $retention_months / 1073741824; 1),
           storage_gib_retained_per_patroni_node: (if $clusters then r($month * $retention_months / $clusters / 1073741824; 1) else null end),
           wal_gib_per_day: r($v * ($wbpe // 0) / 1073741824; 1),
           days_on_local_disk: (if ($tbpe // 0) > 0 then r($node_disk_gb * 1e9 * 0.7 / ($v / (($clusters // 1)) * $tbpe); 1) else null end)}],
      assumptions: [
        "A CCX13 node = 2 dedicated vCPU, 8 GB RAM, NVMe: the shape of the machine measured (\($nproc) CPUs here\(if $cpus != "all" then ", capped to CPUs \($cpus)" else "" end)).",
        "Planned rate = sustained saturation x \($headroom) (headroom for bursts, vacuum, backups, failover catch-up).",
        "Peak = \($peak_factor) x the daily mean (events/day / 86400); nodes are sized for the peak. The local log absorbs short bursts above it.",
        "Storage = events/day x 30.44 x table bytes per stored event (heap + indexes + TOAST, measured: \(r($tbpe; 1)) B); WAL (\(r($wbpe; 1)) B/event) is transient (replication, archiving) and listed per day.",
        "Retention \($retention_months) months (partitions retain --keep \($retention_months)mo); every Patroni node holds a full copy of its cluster's data.",
        "Above one Patroni cluster the data is split across clusters (e.g. by tenant): one PostgreSQL primary takes all writes of its cluster.",
        "3-node figure: \($three.method).",
        "Single-node layout: crm-ingest and PostgreSQL on one node, no replica (no high availability).",
        "A CCX13 has \($node_disk_gb) GB of local NVMe: 'days on local disk' is how many days of events 70 % of it holds per Patroni node; longer retention needs attached volumes or archiving (partitions retain --archive).",
        "The load generator ran on the same machine and its CPU is inside the measurement; the machine is shared, so rates are noisy."
      ]
    }
  }
