"""An app host's engine: docker and compose packages, daemon.json, the docker group.

`pyinfra inventories/staging.py deploys/server.py` runs it with the other roles of each host.
"""

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from deploys.config_files import docker_daemon_json
from deploys.data import changed, setting
from deploys.packages import packages


@deploy("docker host")
def docker_host():
    files.directory(name="folder /etc/docker", path="/etc/docker", mode="755")
    daemon = files.put(
        name="/etc/docker/daemon.json",
        src=StringIO(docker_daemon_json(setting("registry"), setting("registry_scheme") == "http")),
        dest="/etc/docker/daemon.json",
        mode="644",
    )
    installed = packages(setting("docker_packages"))
    systemd.service(name="docker running", service="docker", running=True, enabled=True)
    # a new daemon.json on a running engine: restart it (live-restore keeps the containers);
    # a fresh install started with the file already in place
    systemd.service(
        name="docker restarted (daemon.json changed)",
        service="docker",
        restarted=True,
        _if=lambda: changed(daemon) and not changed(installed),
    )
