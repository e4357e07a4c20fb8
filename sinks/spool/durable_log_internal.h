// What the three parts of durable_log's implementation share (durable_log.cc: opening and recovery,
// durable_log_append.cc: appends and the flusher, durable_log_read.cc: the drainer side). Private to them.
#pragma once

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>

#include <spdlog/spdlog.h>

#include "sinks/spool/durable_log.h"
#include "sinks/spool/file_io.h"
#include "sinks/spool/segment_format.h"

namespace crm::sinks::spool::internal {

using format::frame_header_size;
using format::segment_header_size;
using steady = std::chrono::steady_clock;
using namespace file_io;

}  // namespace crm::sinks::spool::internal
