#pragma once
// SIGINT / SIGTERM as a request: long work checks it between iterations, writes a checkpoint
// and returns normally, so nothing is lost and the process exits 0.

namespace idtune {

/// Installs the handlers (idempotent). A second signal while one is pending exits at once.
void install_interrupt_handlers();
bool interrupt_requested();
/// Forgets a pending request (a program that runs several jobs, or a test).
void clear_interrupt_request();

}  // namespace idtune
