from setuptools import find_packages, setup

setup(
    name="devpi-twisted",
    version="0.1.0",
    description="A package index server for Python teams: PyPI mirror and private indexes, on Twisted",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    # package_dir "": the repository root is where the packages are. With it an editable
    # install (pip install -e .) puts the root on sys.path, where twisted finds
    # twisted/plugins/devpi_plugin.py (setuptools' import hook would hide it from twistd).
    package_dir={"": "."},
    packages=find_packages(include=["devpi_twisted", "devpi_twisted.*"]) + ["twisted.plugins"],
    package_data={"devpi_twisted.storage.migrations": ["*.sql"],
                  "devpi_twisted.web.ui": ["templates/*.html", "static/*"]},
    install_requires=[
        "Twisted>=24.7",
        "klein>=23.5",
        "treq>=23.11",
        "attrs>=23.1",
        "packaging>=23.2",
        "passlib>=1.7.4",
        "argon2-cffi>=21.3",
        "itsdangerous>=2.1",
        "PyYAML>=6.0",
        "txpostgres>=1.7",
        "psycopg2-binary>=2.9",
        "multipart>=1.1",
        "ldaptor>=21.2",
        "pymacaroons>=0.13",
        "Jinja2>=3.1",
        "readme-renderer[md]>=42",
        "brotli>=1.1",  # precompressed simple pages and project lists (br)
        "zstandard>=0.22",  # (zstd)
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "pytest-timeout>=2.2",
            "import-linter>=2.0",
            "devpi-client>=7,<8",
            "devpi-tokens[client]>=1.1",
            "twine>=5",
            "keyring>=24",
            "keyrings.alt>=5",
            "uv>=0.4",
            "tox>=4",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "types-PyYAML",
            "types-psycopg2",
            "brotli-stubs",
            "playwright>=1.40",  # drives Debian's chromium (tests/browser/), never its own
        ],
    },
    entry_points={"console_scripts": ["devpi-twisted = devpi_twisted.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Software Distribution",
    ],
)
