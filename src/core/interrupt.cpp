#include "idtune/core/interrupt.h"

#include <csignal>
#include <cstdlib>

namespace idtune {

namespace {
volatile std::sig_atomic_t requested = 0;

extern "C" void on_signal(int signal) {
  if (requested) std::_Exit(128 + signal);  // asked twice: stop now
  requested = 1;
}
}  // namespace

void install_interrupt_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

bool interrupt_requested() { return requested != 0; }

void clear_interrupt_request() { requested = 0; }

}  // namespace idtune
