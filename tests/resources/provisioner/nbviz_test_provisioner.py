"""A kernel provisioner for the tests: the kernel runs as a Slurm job step on a node of the test
cluster, another host as far as the network goes, while its Jupyter server stays here (as
jupyter-slurm-provisioner does at JSC: salloc/srun, then the kernel's ports on the node's
address). The server finds it through this folder's entry point (on the server's PYTHONPATH).

Kernel spec metadata: ``{"kernel_provisioner": {"provisioner_name": "nbviz-test-srun",
"config": {"partition": "remote", "address": "<the node's address>"}}}``.
"""

from __future__ import annotations

import random
from typing import Any

from jupyter_client.provisioning import KernelProvisionerBase, LocalProvisioner
from traitlets import Unicode


class SrunProvisioner(LocalProvisioner):  # type: ignore[misc]
    partition = Unicode("remote", config=True)
    #: The node's address: the kernel listens there, the server connects there.
    address = Unicode(config=True)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        km = self.parent
        km.ip = self.address
        # ports on the node: nothing else listens in its network
        ports = random.sample(range(40000, 50000), 5)
        km.shell_port, km.iopub_port, km.stdin_port, km.hb_port, km.control_port = ports
        km.write_connection_file()
        self.connection_info = km.get_connection_info()
        kernel = km.format_kernel_cmd(extra_arguments=kwargs.pop("extra_arguments", []))
        srun = [
            "srun",
            f"--partition={self.partition}",
            "--nodes=1",
            "--ntasks=1",
            "--time=10",
            "--mpi=none",
            f"--job-name=kernel-{self.kernel_id}",
        ]
        return await KernelProvisionerBase.pre_launch(self, cmd=[*srun, *kernel], **kwargs)
