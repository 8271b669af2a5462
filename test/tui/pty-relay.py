# Runs a command in a pseudo-terminal of a given size and relays bytes: our stdin goes to the
# terminal's input, the terminal's output comes to our stdout. Exits with the command's status.
# usage: python3 pty-relay.py COLS ROWS CMD [ARGS...]
import fcntl, os, pty, select, struct, sys, termios

cols, rows, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
    os.execvp(cmd[0], cmd)
inp = sys.stdin.fileno()
out = sys.stdout.fileno()
open_in = True
while True:
    r, _, _ = select.select([fd] + ([inp] if open_in else []), [], [], 0.5)
    if fd in r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        os.write(out, data)
    if open_in and inp in r:
        data = os.read(inp, 4096)
        if not data:
            open_in = False
        else:
            os.write(fd, data)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, 'waitstatus_to_exitcode') else status >> 8)
