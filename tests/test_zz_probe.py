import psutil, time
def test_probe():
    time.sleep(3)
    for p in psutil.Process().children(recursive=True):
        try:
            print(p.pid, p.ppid(), p.status(), " ".join(p.cmdline())[:200])
        except psutil.NoSuchProcess:
            pass
