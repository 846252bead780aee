"""The app's Redis on the db host: Debian's redis-server, bound to the host's address at
`redis_port`, a password required, nothing kept on disk."""

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from deploys.config_files import redis_conf
from deploys.data import changed
from deploys.packages import packages

CONF = "/etc/redis/redis.conf"
PACKAGES = ["redis-server"]


@deploy("redis")
def redis(password: str, listen: tuple[str, int]):
    address, port = listen  # Settings.redis_address: what the app's REDIS_URL names
    packages(PACKAGES)
    conf = files.put(
        name=CONF,
        src=StringIO(redis_conf(address, port, password)),
        dest=CONF,
        user="redis",
        group="redis",
        mode="640",  # it holds the password
    )
    systemd.service(name="redis-server running", service="redis-server", running=True, enabled=True)
    systemd.service(
        name="redis-server restarted (redis.conf changed)",
        service="redis-server",
        restarted=True,
        _if=lambda: changed(conf),
    )
