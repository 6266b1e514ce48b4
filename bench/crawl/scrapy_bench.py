"""The Scrapy anchor of bench/crawl.

    python scrapy_bench.py CONCURRENCY URL [URL...]

Crawls from the start URLs, following every <a href> that stays on the demo site's hosts
(127.0.0.2 to 127.0.0.9), robots.txt obeyed, CONCURRENCY requests in flight in all and per
host, no cache, no AutoThrottle, no delay. Prints one JSON line:
{"crawler": "scrapy", "pages": N, "seconds": S}, where pages counts the HTML responses the
spider parsed (the benchmark script counts pages on the server's side, which is the figure
it compares).

Start requests go through the duplicate filter (Scrapy's default start requests bypass it,
so the start page would be fetched a second time when a page links back to it).
"""

import json
import sys
import time

import scrapy
from scrapy.crawler import CrawlerProcess

DEMO_HOSTS = [f"127.0.0.{n}" for n in range(2, 10)]


class DemoSpider(scrapy.Spider):
    name = "demo"
    allowed_domains = DEMO_HOSTS

    def __init__(self, start, counter, **kwargs):
        super().__init__(**kwargs)
        self.start_urls = start
        self.counter = counter

    async def start(self):
        for url in self.start_urls:
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response):
        if not isinstance(response, scrapy.http.TextResponse):
            return
        self.counter["pages"] += 1
        for href in response.css("a::attr(href)").getall():
            yield response.follow(href, callback=self.parse)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: scrapy_bench.py CONCURRENCY URL [URL...]")
    concurrency = int(sys.argv[1])
    start = sys.argv[2:]
    process = CrawlerProcess(
        settings={
            "CONCURRENT_REQUESTS": concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
            "ROBOTSTXT_OBEY": True,
            "LOG_LEVEL": "WARNING",
            "HTTPCACHE_ENABLED": False,
            "AUTOTHROTTLE_ENABLED": False,
            "DOWNLOAD_DELAY": 0,
            "TELNETCONSOLE_ENABLED": False,
            "COOKIES_ENABLED": False,
        }
    )
    counter = {"pages": 0}
    process.crawl(DemoSpider, start=start, counter=counter)
    began = time.monotonic()
    process.start()
    seconds = time.monotonic() - began
    print(json.dumps({"crawler": "scrapy", "pages": counter["pages"], "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
