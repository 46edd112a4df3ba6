"""SizedDockerSpawner: DockerSpawner with a form of images and sizes, and limits per size.

Installed by stage 08's install.sh as /usr/local/lib/jupyterhub/sizedspawner.py;
jupyterhub_config.py puts that directory on sys.path and imports the class.
"""

from __future__ import annotations

import html

import docker
from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Any, Dict, Unicode, default

# Numerical libraries start one thread per CPU of the *machine* unless told otherwise;
# in a container limited to fewer CPUs those threads only queue for the quota.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def refuse(status: int, message: str) -> web.HTTPError:
    """An HTTP error whose message the spawn page shows as it is (not as "HTTP 400: Bad Request (...)")."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message  # what JupyterHub's spawn page and REST API show
    return error


class SizedDockerSpawner(DockerSpawner):
    """A container per user, of the image and the size the user picks in the form."""

    sizes = Dict(
        config=True,
        help="""Sizes users pick from, in the form's order: name -> {"cpu": 2, "mem": "4G", "note": "..."}.
        The first one is the default. "mem" takes the hub's suffixes (K, M, G, T: powers of 1024).""",
    )
    size = Unicode("", help="The size of the current (or last) start, set from user_options.")
    may_use = Any(
        None,
        config=True,
        help="""A function (user, size name) -> bool: may this user start this size?
        The form greys out the sizes a user may not start; the config's pre_spawn_hook enforces it.""",
    )

    # -- the form --------------------------------------------------------------------------
    def allowed(self, size: str) -> bool:
        """True when this spawner's user may start ``size`` (every size, without a may_use function)."""
        return self.may_use is None or bool(self.may_use(self.user, size))

    @default("options_form")
    def _sized_form(self):
        # A function, so the hub renders the form anew for each request (admin rights and groups change).
        return lambda spawner: spawner.render_form()

    def render_form(self) -> str:
        """The form: the images of allowed_images, then the sizes, both from the config; the first ones checked."""
        images = [self.choice("image", name, html.escape(name), first=i == 0, usable=True)
                  for i, name in enumerate(self._get_allowed_images())]  # fmt: skip
        sizes = []
        for i, (name, size) in enumerate(self.sizes.items()):
            usable = self.allowed(name)
            cpus = f"{size['cpu']:g} CPU" + ("" if float(size["cpu"]) == 1 else "s")
            label = f"{name}: {cpus}, {size['mem']} memory" + (f" ({size['note']})" if "note" in size else "")
            label = html.escape(label) + ("" if usable else " <em>(not available to you)</em>")
            sizes.append(self.choice("size", name, label, first=i == 0, usable=usable))
        return "<label>Image</label>\n" + "\n".join(images) + "\n<p></p><label>Size</label>\n" + "\n".join(sizes)

    @staticmethod
    def choice(field: str, value: str, label: str, *, first: bool, usable: bool) -> str:
        """One radio button of the form (``label`` is HTML already)."""
        checked = " checked" if first else ""
        disabled = "" if usable else " disabled"
        return (
            f'<div class="radio"><label><input type="radio" name="{field}" value="{html.escape(value)}"'
            f"{checked}{disabled}> {label}</label></div>"
        )

    @default("options_from_form")
    def _sized_options_from_form(self):
        return self.read_form

    def read_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        """Turn the form into user_options; refuse a value the form never offered (an edited or forged POST)."""
        options = {}
        for field in ("image", "size"):
            values = formdata.get(field, [])
            options[field] = self.check_choice(field, values[0] if len(values) == 1 else (values or None))
        return options

    def check_choice(self, field: str, value: object) -> str:
        """``value`` if it is one of the image or size names of the config; else a 400 that lists them."""
        choices = self._get_allowed_images() if field == "image" else self.sizes
        if value is None:
            raise refuse(400, f"No {field} chosen: choose one of {', '.join(choices)}.")
        if not isinstance(value, str) or value not in choices:
            raise refuse(400, f"Unknown {field} {value!r}: choose one of {', '.join(choices)}.")
        return value

    # -- the start -------------------------------------------------------------------------
    @default("apply_user_options")
    def _sized_apply_user_options(self):
        return type(self).apply_choices  # the hub calls it as apply_user_options(spawner, user_options)

    def apply_choices(self, user_options: dict) -> None:
        """Set image, limits and size from user_options, checked again: the REST API skips the form.

        Runs before each start, before the config's pre_spawn_hook (JupyterHub 5.3 and later).
        """
        first_image, first_size = next(iter(self._get_allowed_images())), next(iter(self.sizes))
        image = self.check_choice("image", user_options.get("image", first_image))
        self.size = self.check_choice("size", user_options.get("size", first_size))
        size = self.sizes[self.size]
        self.image = self._get_allowed_images()[image]
        self.mem_limit = size["mem"]  # "4G" -> 4294967296 bytes, by the hub's own parser
        self.cpu_limit = None  # not DockerSpawner's CPU quota: --cpus below, which Docker checks
        self.extra_host_config = {
            **self.extra_host_config,
            "nano_cpus": int(float(size["cpu"]) * 1e9),  # docker run --cpus
            "memswap_limit": self.mem_limit,  # no swap on top: past the limit, the kernel kills
        }

    async def start(self):
        """Start as DockerSpawner does; say on the spawn page when Docker refuses the container."""
        try:
            return await super().start()
        except docker.errors.APIError as e:
            # e.g. more CPUs than the machine has: "Range of CPUs is from 0.01 to 2.00, ..."
            raise refuse(500, f"Docker refused to start a {self.size} server: {str(e.explanation).rstrip('.')}.") from e

    def get_env(self) -> dict[str, str]:
        """The hub's variables, plus the size, its CPU count for the numerical libraries, and the image."""
        env = super().get_env()
        cpus = float(self.sizes[self.size]["cpu"])
        env.update(dict.fromkeys(THREAD_VARIABLES, str(max(1, int(cpus)))))
        env["CPU_LIMIT"] = str(cpus)
        env["SERVER_SIZE"] = self.size
        env["JUPYTER_IMAGE"] = self.image  # the image's name, as repo2docker and Zero to JupyterHub set it
        return env
